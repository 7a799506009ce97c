"""Character language model speed against a bare torch.nn.LSTM of the same shape, side by side in one run.

    python benchmarks/charlm_speed.py [--seconds 8]

Prints one JSON object: the full TBPTT training step (embedding, LSTM, softmax loss, backward,
clipping, Adam) against a bare LSTM forward+backward of the same shape, and sampling speed with
64 streams at once. Sizes are the recipe's defaults (TextgenConfig); the text is random characters.
"""

from __future__ import annotations

# isort: split

from common import (  # first: it puts the repository on the import path
    bare_lstm_steps,
    comparison_fields,
    side_by_side,
    train_step_of,
)

# isort: split

import argparse
import json
import time

import torch

from seqnlp.config import from_dict
from seqnlp.tasks.textgen.task import Document, TextgenConfig, TextgenTask
from seqnlp.training.trainer import build_optimizer


def random_text(config, batches: int) -> str:
    """Random letters and punctuation, enough for ``batches`` training batches of ``config``'s shape."""
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:!?'\n"
    generator = torch.Generator().manual_seed(0)
    draws = torch.randint(0, len(alphabet), (config.batch_size * config.seq_len * batches,), generator=generator)
    return "".join(alphabet[i] for i in draws)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0, help="time per measurement")
    args = parser.parse_args()
    torch.manual_seed(0)
    config = from_dict(TextgenConfig, {})
    task = TextgenTask(config)
    text = random_text(config, 12)
    task.build_vocabularies([Document(text)])
    model = task.build_model()
    optimizer = build_optimizer(model, config)
    batches = task.batches(task.prepare([Document(text)]), shuffle=True)
    bare = torch.nn.LSTM(config.embed_dim, config.hidden, num_layers=config.layers, batch_first=True)
    bare_train_step, _ = bare_lstm_steps(bare, config.embed_dim, "inputs")
    train = side_by_side(train_step_of(model, optimizer, config.clip_norm), bare_train_step, batches, args.seconds)
    prompts = [list(task.chars.encode("The ")) for _ in range(64)]
    model.eval()
    model.generate(prompts, 10, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    length = 300
    model.generate(prompts, length, temperature=0.8, generator=torch.Generator().manual_seed(0))
    generate_speed = 64 * length / (time.perf_counter() - start)
    print(
        json.dumps(
            {
                **comparison_fields("train", train),
                "generate_chars_per_s": round(generate_speed),
                "generate_streams": 64,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "shape": {
                    "embed": config.embed_dim,
                    "hidden": config.hidden,
                    "layers": config.layers,
                    "cell": config.cell,
                    "streams": config.batch_size,
                    "seq_len": config.seq_len,
                    "vocab": len(task.chars),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
