"""Vanishing and exploding gradients, measured: ``seqnlp diagnose gradients``.

A long-range task (the label is the *first* token of a long random sequence) is learnt by a
one-layer rnn, lstm and gru, each with and without gradient clipping. After training, the
recurrence is unrolled with the reference cells (``seqnlp.nn.cells``) so that ``dL/dh_t`` can be
read for every step: its norm against the distance from the loss shows how much signal from
the first token can still reach the weights.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from seqnlp.config import ArgumentParser, ConfigError
from seqnlp.nn.cells import ReferenceRNN
from seqnlp.nn.encoder import CELLS
from seqnlp.report import markdown_table


class FirstTokenModel(nn.Module):
    def __init__(self, cell: str, vocab: int, hidden: int, reference: bool = False):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.rnn = ReferenceRNN(cell, hidden, hidden) if reference else CELLS[cell](hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab)
        if cell == "lstm" and not reference:
            with torch.no_grad():  # forget-gate bias 1, the usual LSTM initialisation (Jozefowicz et al., 2015)
                self.rnn.bias_ih_l0[hidden : 2 * hidden].fill_(1.0)

    def forward(self, tokens):
        outputs, _ = self.rnn(self.embed(tokens))
        return self.out(outputs[:, -1])


def make_batch(size: int, length: int, vocab: int, generator: torch.Generator):
    tokens = torch.randint(0, vocab, (size, length), generator=generator)
    return tokens, tokens[:, 0]


def gradient_norms(model: FirstTokenModel, cell: str, tokens, labels) -> list[float]:
    """``mean_b ||dL/dh_t||`` for every step t, by unrolling the trained weights with the reference cell."""
    probe = FirstTokenModel(cell, model.embed.num_embeddings, model.embed.embedding_dim, reference=True)
    with torch.no_grad():
        probe.embed.weight.copy_(model.embed.weight)
        probe.out.load_state_dict(model.out.state_dict())
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(probe.rnn.cell, name).copy_(getattr(model.rnn, f"{name}_l0"))
    probe.rnn.keep_states = True
    loss = F.cross_entropy(probe(tokens), labels)
    loss.backward()
    return [float(h.grad.norm(dim=1).mean()) for h in probe.rnn.states]


def run(cell: str, clip: float | None, length: int, steps: int, hidden: int, vocab: int, seed: int) -> dict:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = FirstTokenModel(cell, vocab, hidden)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses, clipped_steps = [], 0
    for _ in range(steps):
        tokens, labels = make_batch(64, length, vocab, generator)
        loss = F.cross_entropy(model(tokens), labels)
        optimizer.zero_grad()
        loss.backward()
        if clip:
            clipped_steps += int(nn.utils.clip_grad_norm_(model.parameters(), clip) > clip)
        optimizer.step()
        losses.append(loss.item())
    tokens, labels = make_batch(256, length, vocab, torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        accuracy = float((model(tokens).argmax(1) == labels).float().mean())
    norms = gradient_norms(model, cell, tokens, labels)
    return {
        "grad_norms": norms,
        "accuracy": accuracy,
        "final_loss": sum(losses[-10:]) / min(10, len(losses)),
        "clip_norm": clip,
        "clipped_steps": clipped_steps,
    }


def diagnose_gradients(
    output_dir, length: int = 50, steps: int = 150, hidden: int = 32, vocab: int = 8, seed: int = 0, clip: float = 1.0
) -> dict:
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for cell in ("rnn", "lstm", "gru"):
        results[cell] = run(cell, None, length, steps, hidden, vocab, seed)
        results[f"{cell}_clipped"] = run(cell, clip, length, steps, hidden, vocab, seed)
    settings = {
        "length": length,
        "steps": steps,
        "hidden": hidden,
        "vocab": vocab,
        "seed": seed,
        "clip_norm": clip,
        "optimizer": "SGD lr 0.5",
        "task": "label = first token",
    }
    (output_dir / "gradients.json").write_text(
        json.dumps({**results, "settings": settings}, indent=2) + "\n", encoding="utf-8"
    )
    plot(results, output_dir / "gradients.png")
    write_report(results, settings, output_dir / "report.md")
    return results


def plot(results: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    colors = {"rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green"}
    for name, result in results.items():
        norms = result["grad_norms"]
        distance = list(range(len(norms) - 1, -1, -1))
        cell = name.split("_")[0]
        ax.plot(
            distance,
            [max(n, 1e-30) for n in norms],
            color=colors[cell],
            linestyle="--" if "clipped" in name else "-",
            label=name,
        )
    ax.set_yscale("log")
    ax.set_xlabel("distance from the loss (time steps)")
    ax.set_ylabel("mean ||dL/dh_t||")
    ax.set_title("Gradient reaching each time step (label = first token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(results: dict, settings: dict, path) -> None:
    rows = []
    for name, r in results.items():
        first, last = r["grad_norms"][0], r["grad_norms"][-1]
        decay = math.log10(max(first, 1e-300) / last) if last > 0 else float("nan")
        rows.append([name, f"{last:.3g}", f"{first:.3g}", f"{decay:.1f}", f"{r['accuracy']:.3f}"])
    lstm_over_rnn = results["lstm"]["grad_norms"][0] / max(results["rnn"]["grad_norms"][0], 1e-300)
    lines = [
        "# Vanishing and exploding gradients",
        "",
        f"Task: sequences of {settings['length']} random tokens (vocabulary {settings['vocab']}); the label is the "
        "first token, "
        f"so only gradient that travels back all {settings['length']} steps can teach it. Chance accuracy is "
        f"{1 / settings['vocab']:.3f}.",
        f"Each model: one layer, hidden {settings['hidden']}, {settings['steps']} steps of {settings['optimizer']}; "
        f"'_clipped' runs clip the gradient norm at {settings['clip_norm']}.",
        "",
        markdown_table(
            ["model", "||dL/dh|| at the last step", "at the first step", "orders of magnitude lost", "accuracy"], rows
        ),
        "",
        f"At the first step the LSTM's gradient is {lstm_over_rnn:.2e} times the vanilla RNN's. ",
        "The vanilla RNN multiplies the gradient by its recurrent Jacobian at every step, so it shrinks "
        "geometrically and "
        "the first token's signal vanishes; the LSTM's additive cell state (and the GRU's gated interpolation) let "
        "it survive. "
        "Clipping bounds the size of each update, which guards against *exploding* gradients, but it cannot restore a "
        "gradient that has vanished.",
        "",
        "Clipping engaged on "
        + ", ".join(
            f"{results[n]['clipped_steps']} of {settings['steps']} steps for {n}"
            for n in results
            if n.endswith("_clipped")
        )
        + " (where it never engaged, the clipped run equals the unclipped one).",
        "",
        "![gradient norms](gradients.png)",
        "",
    ]
    Path(path).write_text("\n".join(lines), encoding="utf-8")


def main(argv) -> None:
    parser = ArgumentParser(prog="seqnlp diagnose gradients", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["gradients"])
    parser.add_argument("--output-dir", default="runs/gradients")
    parser.add_argument("--length", type=int, default=50)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if min(args.length, args.steps, args.hidden) < 1 or not 0 <= args.seed < 2**32:
        raise ConfigError("--length, --steps and --hidden must be >= 1 and --seed in [0, 2**32)")
    results = diagnose_gradients(args.output_dir, args.length, args.steps, args.hidden, seed=args.seed)
    summary = {
        name: {"first_step": r["grad_norms"][0], "last_step": r["grad_norms"][-1], "accuracy": r["accuracy"]}
        for name, r in results.items()
    }
    print(json.dumps(summary, indent=2))
