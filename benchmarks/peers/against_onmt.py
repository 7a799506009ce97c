"""seqnlp's translator against OpenNMT-py's, side by side on the same subwords, sizes, batches and threads.

    python benchmarks/peers/against_onmt.py [--threads 2] [--rounds 5] [--steps 454] [--train-steps 1500]

Makes (once) an OpenNMT-py 3.5.1 environment beside torch 2.13.0 CPU (``harness.py``). OpenNMT-py 3.5.1 declares
``torch<2.3``, so it is installed without its declared requirements and those (less torch) are installed by name:
it runs on torch 2.13.0 as it is, unpatched. Both sides: Multi30k de-en, one joint SentencePiece model of 4,000
pieces trained by seqnlp on the training text (OpenNMT-py reads the same segmentation from files), 256-dim
embeddings shared by source, target and output layer, a one-layer BiLSTM encoder of 128 units per direction
(OpenNMT-py's decoder starts from both directions' final states, so its size is theirs together), a one-layer
LSTM-256 decoder with general attention, dropout 0.3, label smoothing 0.1, Adam at 2e-3, clipping at 5, batches
of 64 sentences, no weight averaging.

Training, with input feeding and without (a fresh pair of models each): ``--rounds`` pairs of alternating windows
of ``--steps`` steps, in source + target subwords per second. A window is by default as many steps as one pass over
the 29,000 training pairs takes (454): each side batches its own way (seqnlp by both lengths within pools of 50
batches, OpenNMT-py by sorting a bucket of 262,144 examples), so a window of a few dozen steps meets a different mix
of lengths on each side and their ratio spreads widely (1.25 to 1.92 over 15 rounds of 40 steps). OpenNMT-py
sorts its next bucket after 4,096 batches, a pause the default run (3,780 batches of the input-feeding model) does
not reach.

Decoding: the input-feeding pair then trains ``--train-steps`` more steps each (one long window a side, also
reported), and translates the 1,014 Multi30k validation sentences greedily and with beam 5 (GNMT length penalty
1.0, batches of 64, the decoder's products in int8 on both sides: seqnlp's CPU default and OpenNMT-py's
``-precision int8``) in alternating passes, in sentences per second, with each side's sacreBLEU on the same
sentences beside it. Prints one JSON object.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

from harness import DATA, Worker, environment, take_turns, version_of, window_arguments

ONMT = "OpenNMT-py==3.5.1"
# its declared requirements, torch left out (the environment's torch is seqnlp's)
ONMT_REQUIREMENTS = [
    "configargparse",
    "ctranslate2>=4,<5",
    "tensorboard>=2.3",
    "flask",
    "waitress",
    "pyonmttok>=1.37,<2",
    "pyyaml",
    "sacrebleu",
    "rapidfuzz",
    "pyahocorasick",
    "fasttext-wheel",
    "spacy",
    "six",
]

SIZES = {
    "embed_dim": 256,
    "hidden": 128,
    "decoder_hidden": 256,
    "dropout": 0.3,
    "label_smoothing": 0.1,
    "lr": 2e-3,
    "clip_norm": 5.0,
    "batch_size": 64,
}
SEQNLP_TRANSLATOR = {
    **SIZES,
    "vocab_size": 4000,
    "joint_vocab": True,
    "tie_embeddings": True,
    "attention": "general",
    "subword_sampling": 0.0,  # OpenNMT-py reads one fixed segmentation
    "optimizer": "adam",
    "average_decay": 0.0,
    "int8_decoding": True,
    "length_penalty": 1.0,
}


def shared_subwords(work: Path) -> dict:
    """seqnlp's SentencePiece model of the training text, saved for its worker, and the segmented files OpenNMT-py
    reads (``train.src``, ``train.tgt``, ``val.src``, ``vocab.txt``); the assets ``load_assets`` takes."""
    from seqnlp.config import from_dict
    from seqnlp.tasks.translate.task import TranslateConfig, TranslateTask

    task = TranslateTask(from_dict(TranslateConfig, SEQNLP_TRANSLATOR))
    train = task.read_file(str(DATA / "multi30k/train"))
    task.build_vocabularies(train)
    assets = task.save_assets(work)
    counts = Counter()

    def write(path: Path, texts: list[str], count: bool) -> None:
        with path.open("w", encoding="utf-8") as out:
            for text in texts:
                pieces = task.src_sp.sp.encode(text, out_type=str)[: task.config.max_tokens]
                counts.update(pieces if count else ())
                out.write(" ".join(pieces) + "\n")

    write(work / "train.src", [pair.src for pair in train], True)
    write(work / "train.tgt", [pair.tgt for pair in train], True)
    write(work / "val.src", [pair.src for pair in task.read_file(str(DATA / "multi30k/val"))], False)
    (work / "vocab.txt").write_text("".join(f"{piece}\t{n}\n" for piece, n in counts.most_common()), encoding="utf-8")
    return assets


def bleu(path: Path, references: list[str]) -> float:
    import sacrebleu

    hypotheses = path.read_text(encoding="utf-8").splitlines()
    return round(sacrebleu.corpus_bleu(hypotheses, [references]).score, 2)


def one_window(ours: Worker, theirs: Worker, op: str, **args) -> dict:
    """One window a side (ours first), as rates and their ratio."""
    a, b = ours.rate(op, **args), theirs.rate(op, **args)
    return {"seqnlp": round(a, 1), "peer": round(b, 1), "ratio": round(a / b, 3)}


def main(argv=None) -> dict:
    parser = window_arguments(__doc__.splitlines()[0])
    parser.add_argument("--train-steps", type=int, default=1500, help="training steps before decoding")
    parser.set_defaults(steps=None)
    args = parser.parse_args(argv)
    train_pairs = len((DATA / "multi30k/train.en").read_text(encoding="utf-8").splitlines())
    args.steps = args.steps or -(-train_pairs // SIZES["batch_size"])  # one pass over the training pairs
    python = environment("opennmt-py-3.5.1", ONMT_REQUIREMENTS, [ONMT])
    references = (DATA / "multi30k/val.en").read_text(encoding="utf-8").splitlines()
    result = {
        "peer": f"OpenNMT-py {version_of(python, 'OpenNMT-py')}",
        "threads": args.threads,
        "sizes": SIZES,
        "window_steps": args.steps,
    }
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        assets = shared_subwords(work)
        common = {"warmup_steps": 10, "infer_batch_size": 64, "work": str(work)}
        for input_feed in (True, False):
            name = "input_feed" if input_feed else "no_input_feed"
            ours = Worker(
                sys.executable,
                "seqnlp_worker.py",
                {
                    **common,
                    "task": "translator",
                    "assets": assets,
                    "train": str(DATA / "multi30k/train"),
                    "infer": str(DATA / "multi30k/val"),
                    "hypotheses": str(work / "seqnlp"),
                    "config": {**SEQNLP_TRANSLATOR, "input_feed": input_feed, "eval_batch_size": 64},
                },
                args.threads,
                work / f"seqnlp-{name}.log",
            )
            theirs = Worker(
                python,
                "onmt_worker.py",
                {
                    **common,
                    "sizes": SIZES,
                    "input_feed": input_feed,
                    "hypotheses": str(work / "onmt"),
                    "length_penalty": 1.0,
                    "precision": "int8",
                },
                args.threads,
                work / f"onmt-{name}.log",
            )
            try:
                result[f"train_{name}"] = take_turns(ours, theirs, "train", args.rounds, steps=args.steps)
                if input_feed:
                    result["train_before_decoding"] = {
                        "steps": args.train_steps, **one_window(ours, theirs, "train", steps=args.train_steps)
                    }  # fmt: skip
                    for beam in (1, 5):
                        speed = take_turns(ours, theirs, "translate", args.rounds, beam=beam)
                        speed["bleu"] = {
                            side: bleu(Path(f"{work / side}-beam{beam}.txt"), references) for side in ("seqnlp", "onmt")
                        }
                        result[f"beam{beam}"] = speed
            finally:
                ours.close()
                theirs.close()
    result["train_vs_onmt"] = min(result["train_input_feed"]["ratio"], result["train_no_input_feed"]["ratio"])
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
