"""Sentiment classifier speed against a bare torch.nn.LSTM of the same shape, side by side in one run.

    python benchmarks/classifier_speed.py [--seconds 6]

Prints one JSON object. Texts follow the SST-2 train length distribution (deciles below), words
come from a synthetic vocabulary; sizes are the recipe's defaults (SentimentConfig).
"""

from __future__ import annotations

# isort: split

from common import compare_with_bare_lstm  # first: it puts the repository on the import path

# isort: split

import argparse
import json
import random
import string

import torch

from seqnlp.config import from_dict
from seqnlp.tasks.sentiment.task import SentimentConfig, SentimentTask, TextExample
from seqnlp.training.trainer import build_optimizer

# Length deciles (min, 10%, ..., max) of ../shared/data/sst2/train.tsv, in whitespace tokens.
SST2_LENGTH_DECILES = [1, 2, 3, 4, 5, 7, 9, 12, 15, 21, 52]


def synthetic_texts(count: int, rng: random.Random) -> list[TextExample]:
    words = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 9))) for _ in range(15000)]
    texts = []
    for _ in range(count):
        d = rng.randrange(10)
        length = rng.randint(SST2_LENGTH_DECILES[d], SST2_LENGTH_DECILES[d + 1])
        texts.append(TextExample(" ".join(rng.choice(words) for _ in range(length)), rng.choice(["0", "1"])))
    return texts


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6.0, help="time per measurement")
    args = parser.parse_args()
    torch.manual_seed(0)
    config = from_dict(SentimentConfig, {})
    task = SentimentTask(config)
    texts = synthetic_texts(8000, random.Random(0))
    task.build_vocabularies(texts)
    model = task.build_model()
    optimizer = build_optimizer(model, config)
    items = task.prepare(texts)
    train_batches = task.batches(items, shuffle=True)[:120]
    infer_batches = task.batches(items, shuffle=False)
    input_dim = model.embedding.out_dim
    result = compare_with_bare_lstm(model, optimizer, config, input_dim, train_batches, infer_batches, args.seconds)
    result.update(
        {
            "shape": {
                "input": input_dim,
                "hidden": config.hidden,
                "layers": config.layers,
                "bidirectional": config.bidirectional,
                "pooling": config.pooling,
                "train_batch": config.batch_size,
                "infer_batch": config.eval_batch_size,
            },
            "data": "synthetic, SST-2 train length distribution",
        }
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
