"""PyTorch against onnxruntime, end to end through ``seqnlp.load(...).predict``: latency at batch 1, throughput at 64.

    python benchmarks/onnx_speed.py [--tagger runs/ner/model] [--classifier runs/sentiment/model]
                                    [--translator runs/translate/model] [--requests 200] [--rounds 3]

Prints one JSON object: for the tagger, the classifier and the translator (greedy and beam 5), the median
latency of single-input requests (``torch_p50_ms``, ``onnx_p50_ms``) and inputs per second in batches of 64
(``torch_batch64_per_s``, ``onnx_batch64_per_s``), with ``onnx_p50_ratio`` = onnx / torch latency. Each model is
exported into a temporary folder first. Requests come in blocks of 20 that alternate between the two runtimes,
and batches of 64 are timed in ``--rounds`` adjacent pairs, so both see the same machine speed.

Inputs are the dev sentences of ``../shared/data`` (CoNLL-2003, SST-2, Multi30k) where they exist, else the
bundled samples in ``data/``. The PyTorch translator decodes as its config says (int8 products on CPU by default);
the ONNX one in float32.
"""

from __future__ import annotations

from common import median_ratio  # first: it puts the repository on the import path

# isort: split

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import seqnlp
from seqnlp.serving.export import export

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def conll_sentences(path: Path) -> list[str]:
    sentences, words = [], []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if line.strip() and not line.startswith("-DOCSTART-"):
            words.append(line.split()[0])
        elif words:
            sentences.append(" ".join(words))
            words = []
    return sentences


def inputs_for(kind: str) -> list[str]:
    if kind == "tagger":
        path = SHARED / "conll2003" / "dev.txt"
        return conll_sentences(path if path.exists() else ROOT / "data/ner/dev.txt")
    if kind == "classifier":
        path = SHARED / "sst2" / "dev.tsv"
        path = path if path.exists() else ROOT / "data/sentiment/dev.tsv"
        return [line.split("\t")[0] for line in path.read_text(encoding="utf-8").splitlines()[1:]]
    path = SHARED / "multi30k" / "val.de"
    path = path if path.exists() else ROOT / "data/translate/val.de"
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


BLOCK = 20  # requests in a row per runtime


def latencies(models: dict, texts: list[str], requests: int, options: dict) -> dict[str, float]:
    """Median milliseconds of ``requests`` single-input predictions per runtime, in alternating blocks of ``BLOCK``.

    Blocks, not single requests in turn: a runtime's worker threads may still be busy (spinning, freeing) right
    after its call, which would tax the other's next request. Each block starts with one untimed request.
    """
    times = {name: [] for name in models}
    for block, first in enumerate(range(0, requests, BLOCK)):
        order = list(models) if block % 2 == 0 else list(reversed(models))
        for name in order:
            model = models[name]
            model.predict([texts[first % len(texts)]], **options)
            for i in range(first, min(first + BLOCK, requests)):
                start = time.perf_counter()
                model.predict([texts[i % len(texts)]], **options)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1000 for name, t in times.items()}


def throughputs(models: dict, texts: list[str], rounds: int, options: dict, batches: int) -> tuple[dict, list]:
    """Inputs per second in batches of 64 (``batches`` of them per window) in ``rounds`` adjacent pairs of windows."""
    chunks = [texts[i * 64 : (i + 1) * 64] for i in range(batches)]
    speeds = {name: [] for name in models}
    for r in range(rounds):
        order = list(models) if r % 2 == 0 else list(reversed(models))
        for name in order:
            start = time.perf_counter()
            for chunk in chunks:
                models[name].predict(chunk, **options)
            speeds[name].append(sum(len(c) for c in chunks) / (time.perf_counter() - start))
    ratio, ratio_range = median_ratio(list(zip(speeds["onnx"], speeds["torch"])))
    return {name: statistics.median(s) for name, s in speeds.items()}, [ratio, ratio_range]


def compare(model_dir: str, kind: str, args, options_list: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        export(model_dir, Path(tmp) / "onnx")
        models = {"torch": seqnlp.load(model_dir, device="cpu"), "onnx": seqnlp.load(Path(tmp) / "onnx")}
        texts = inputs_for(kind)
        results = {}
        for label, options in options_list.items():
            p50 = latencies(models, texts, args.requests, options)
            per_s, (ratio, ratio_range) = throughputs(models, texts, args.rounds, options, args.batches)
            results[label] = {
                "torch_p50_ms": round(p50["torch"], 3),
                "onnx_p50_ms": round(p50["onnx"], 3),
                "onnx_p50_ratio": round(p50["onnx"] / p50["torch"], 3),
                "torch_batch64_per_s": round(per_s["torch"], 1),
                "onnx_batch64_per_s": round(per_s["onnx"], 1),
                "onnx_batch64_ratio": round(ratio, 3),
                "onnx_batch64_ratio_range": ratio_range,
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tagger", default="runs/ner/model")
    parser.add_argument("--classifier", default="runs/sentiment/model")
    parser.add_argument("--translator", default="runs/translate/model")
    parser.add_argument("--requests", type=int, default=200, help="single-input requests per runtime")
    parser.add_argument("--rounds", type=int, default=3, help="adjacent pairs of batch-64 windows")
    parser.add_argument("--batches", type=int, default=4, help="batches of 64 per window")
    args = parser.parse_args()
    out = {
        "tagger": compare(args.tagger, "tagger", args, {"default": {}})["default"],
        "classifier": compare(args.classifier, "classifier", args, {"default": {}})["default"],
        "translator": compare(args.translator, "translator", args, {"greedy": {"beam": 1}, "beam5": {"beam": 5}}),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
