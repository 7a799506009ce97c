"""Tagger speed against a bare torch.nn.LSTM of the same shape, measured side by side in one run.

    python benchmarks/tagger_speed.py [--conll ../shared/data/conll2003/train.txt] [--seconds 6]

Prints one JSON object. Batches are CoNLL-like: sentence lengths drawn from the CoNLL file when
given (else a built-in CoNLL-2003 length histogram), tokens from a synthetic vocabulary.
Sizes are the recipe's defaults (NERConfig).
"""

from __future__ import annotations

from common import compare_with_bare_lstm  # first: it puts the repository on the import path

# isort: split

import argparse
import json
import random
import string

import torch

from seqnlp.config import from_dict
from seqnlp.data.conll import TaggedSentence, read_conll
from seqnlp.tasks.ner.task import NERConfig, NERTask
from seqnlp.training.trainer import build_optimizer

# Sentence-length deciles (min, 10%, ..., max) of ../shared/data/conll2003/train.txt, used when no file is given.
CONLL_LENGTH_DECILES = [1, 3, 5, 7, 8, 10, 13, 19, 26, 32, 113]
TAGS = ["O"] * 8 + ["B-PER", "I-PER", "B-LOC", "B-ORG", "I-ORG", "B-MISC"]


def synthetic_sentences(count: int, rng: random.Random) -> list[TaggedSentence]:
    words = ["".join(rng.choice(string.ascii_letters) for _ in range(rng.randint(2, 10))) for _ in range(20000)]
    sentences = []
    for _ in range(count):
        d = rng.randrange(10)
        length = rng.randint(CONLL_LENGTH_DECILES[d], CONLL_LENGTH_DECILES[d + 1])
        tags = [rng.choice(TAGS) for _ in range(length)]
        tags = [t.replace("I-", "B-") if i == 0 or tags[i - 1] == "O" else t for i, t in enumerate(tags)]
        sentences.append(TaggedSentence([rng.choice(words[: rng.choice([200, 20000])]) for _ in range(length)], tags))
    return sentences


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--conll", help="CoNLL file to take sentences from")
    parser.add_argument("--seconds", type=float, default=6.0, help="time per measurement")
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = random.Random(0)
    config = from_dict(NERConfig, {"tag_scheme": "bioes"})
    task = NERTask(config)
    sentences = read_conll(args.conll, scheme="bioes") if args.conll else synthetic_sentences(4000, rng)
    task.build_vocabularies(sentences)
    model = task.build_model()
    optimizer = build_optimizer(model, config)
    train_batches = task.batches(task.prepare(sentences), shuffle=True)[:200]
    infer_batches = task.batches(task.prepare(sentences), shuffle=False)[:40]
    input_dim = model.embedding.out_dim
    result = compare_with_bare_lstm(model, optimizer, config, input_dim, train_batches, infer_batches, args.seconds)
    result.update(
        {
            "shape": {
                "input": input_dim,
                "hidden": config.hidden,
                "layers": config.layers,
                "bidirectional": config.bidirectional,
                "train_batch": config.batch_size,
                "infer_batch": config.eval_batch_size,
                "tags": len(task.tags),
            },
            "data": args.conll or "synthetic CoNLL-like lengths",
        }
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
