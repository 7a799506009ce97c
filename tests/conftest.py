import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

torch.set_num_threads(1)
# Tests never reach the network: HF datasets and the hub read local files and caches only.
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# In CI, hypothesis draws the same examples every run (a red build is never luck) and keeps no example database.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def conll_files(tmp_path):
    """A tiny CoNLL train/dev pair: a few hundred tokens, four entity types."""
    return write_tiny_conll(tmp_path)


def write_tiny_conll(folder):
    train = folder / "train.txt"
    dev = folder / "dev.txt"
    sentences = [
        [("Anna", "B-PER"), ("Berg", "I-PER"), ("visited", "O"), ("Berlin", "B-LOC"), (".", "O")],
        [("Acme", "B-ORG"), ("Corp", "I-ORG"), ("hired", "O"), ("Tom", "B-PER"), (".", "O")],
        [("The", "O"), ("German", "B-MISC"), ("team", "O"), ("won", "O"), ("in", "O"), ("Oslo", "B-LOC"), (".", "O")],
        [("Reuters", "B-ORG"), ("said", "O"), ("so", "O"), (".", "O")],
    ]

    def write(path, copies):
        with open(path, "w", encoding="utf-8") as out:
            out.write("-DOCSTART- O\n\n")
            for _ in range(copies):
                for sentence in sentences:
                    out.writelines(f"{tok} {tag}\n" for tok, tag in sentence)
                    out.write("\n")

    write(train, 6)
    write(dev, 1)
    return train, dev


TINY_NER = [
    "--word-dim",
    "16",
    "--hidden",
    "16",
    "--char-dim",
    "8",
    "--char-out",
    "8",
    "--batch-size",
    "4",
    "--quiet",
    "--seed",
    "3",
]


def run_cli(*argv):
    """Run the seqnlp CLI in-process; returns (exit code, stdout, stderr)."""
    import contextlib
    import io

    from seqnlp.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def train_cli(task, train_file, dev_file, output_dir, *flags):
    """``seqnlp train TASK`` on training and dev data into ``output_dir``, in-process (``run_cli``'s result)."""
    return run_cli(
        "train", task, "--train-file", train_file, "--dev-file", dev_file, "--output-dir", output_dir, *flags
    )


slow = pytest.mark.skipif(os.environ.get("SEQNLP_SLOW") != "1", reason="slow: set SEQNLP_SLOW=1")
