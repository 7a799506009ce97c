"""seqnlp's tagger and classifier against Flair's, side by side on the same data, sizes, batches and threads.

    python benchmarks/peers/against_flair.py [--threads 2] [--rounds 5] [--steps 40]

Makes (once) a Flair 0.15.1 environment beside torch 2.13.0 CPU (``harness.py``). Tagger: CoNLL-2003 training
sentences, BiLSTM-CRF with 100-dim trainable word embeddings, a character BiLSTM of 25 + 25 units over 25-dim
character embeddings, 256 hidden units per direction, BIOES tags, batches of 32, plain SGD; seqnlp runs the same
architecture (``char_encoder=lstm``, no casing feature, case-sensitive words), not its defaults. Tagging: the
CoNLL-2003 dev set in batches of 256. Classifier: SST-2 training phrases (GLUE's), 300-dim embeddings, a BiLSTM
of 256 per direction, batches of 64 (Flair's DocumentRNNEmbeddings pools the last states, seqnlp max pooling,
which costs about the same); inference on the 688 whole sentences of ``sst2/sentences/dev.tsv``. Prints one JSON
object: per measurement the median rates (tokens/s) of both sides and the median and range of the per-round
ratios seqnlp / Flair.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from harness import DATA, Worker, environment, take_turns, version_of, window_arguments

FLAIR = "flair==0.15.1"

TAGGER = {"word_dim": 100, "char_dim": 25, "char_out": 50, "hidden": 256, "batch_size": 32}
CLASSIFIER = {"word_dim": 300, "hidden": 256, "batch_size": 64, "dropout": 0.3}
SGD = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.0}  # Flair's ModelTrainer default, on both sides
SEQNLP_TAGGER = {
    **TAGGER,
    **SGD,
    "char_encoder": "lstm",
    "casing_dim": 0,
    "lowercase": False,
    "batch_max_tokens": 0,
    "tag_scheme": "bioes",
}
SEQNLP_CLASSIFIER = {**CLASSIFIER, **SGD}


def measure(task: str, settings: dict, seqnlp_config: dict, flair_python, args, logs: Path) -> dict:
    common = {"task": task, "warmup_steps": 10, "infer_batch_size": 256, **settings}
    ours = Worker(sys.executable, "seqnlp_worker.py", {**common, "config": seqnlp_config}, args.threads,
                  logs / f"seqnlp-{task}.log")  # fmt: skip
    theirs = Worker(flair_python, "flair_worker.py", common, args.threads, logs / f"flair-{task}.log")
    try:
        return {
            "train": take_turns(ours, theirs, "train", args.rounds, steps=args.steps),
            "infer": take_turns(ours, theirs, "infer", args.rounds),
        }
    finally:
        ours.close()
        theirs.close()


def main(argv=None) -> dict:
    parser = window_arguments(__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=4000, help="training examples each side batches")
    args = parser.parse_args(argv)
    python = environment("flair-0.15.1", [FLAIR])
    with tempfile.TemporaryDirectory() as logs:
        logs = Path(logs)
        limit = {"sentences": args.sentences}
        tagger = measure(
            "tagger",
            {**TAGGER, **limit, "train": str(DATA / "conll2003/train.txt"), "infer": str(DATA / "conll2003/dev.txt")},
            {**SEQNLP_TAGGER, "eval_batch_size": 256},
            python, args, logs,
        )  # fmt: skip
        classifier = measure(
            "classifier",
            {**CLASSIFIER, **limit, "train": str(DATA / "sst2/train.tsv"),
             "infer": str(DATA / "sst2/sentences/dev.tsv")},
            {**SEQNLP_CLASSIFIER, "eval_batch_size": 256},
            python, args, logs,
        )  # fmt: skip
    import torch

    result = {
        "peer": f"flair {version_of(python, 'flair')}",
        "torch": {"seqnlp": torch.__version__, "peer": version_of(python, "torch")},
        "threads": args.threads,
        "tagger_train": tagger["train"],
        "tagger_infer": tagger["infer"],
        "classifier_train": classifier["train"],
        "classifier_infer": classifier["infer"],
        "sizes": {"tagger": TAGGER, "classifier": CLASSIFIER},
    }
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
