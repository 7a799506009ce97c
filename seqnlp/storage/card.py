"""Model cards: the ``README.md`` of a model directory, with the HuggingFace Hub's metadata, written from the
same data as ``metrics.json`` (never by hand)."""

from __future__ import annotations

from pathlib import Path

import yaml


def model_card(task, parameters: int, metrics: dict | None = None, summary: dict | None = None) -> str:
    """The card of a model of ``task`` (its config and labels); ``metrics``: what ``metrics.json`` holds, if known."""
    config = task.config
    front = front_matter(task, metrics)
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        "",
        f"# seqnlp {task.name} model",
        "",
        f"A seqnlp model: {task.description()}, {origin(config)}. {parameters:,} parameters; {architecture(config)}.",
        "",
    ]
    if metrics is not None:
        lines += scores_section(metrics, task.metric) + data_section(metrics, summary or {})
    else:
        lines += ["Scores: this folder was saved during training; the run's end writes them here.", ""]
    labels = task.label_names()
    if labels:
        lines += [f"Labels: {', '.join(labels)}.", ""]
    lines += usage_section(task) + limitations_section(task)
    from seqnlp.version import __version__

    lines += [f"Written by seqnlp {__version__} from the run's `metrics.json` and `config.json`.", ""]
    return "\n".join(lines)


def front_matter(task, metrics: dict | None) -> dict:
    config = task.config
    front = {
        "library_name": "seqnlp",
        "pipeline_tag": task.pipeline_tag or task.name,
        "tags": ["seqnlp", task.name, config.cell, "rnn"],
    }
    dataset = hub_dataset(config.dataset)
    if dataset:
        front["datasets"] = [dataset]
    if task.languages():
        front["language"] = task.languages()
    if metrics is not None:
        front["metrics"] = [task.metric]
        front["model-index"] = [{"name": f"seqnlp-{task.name}", "results": model_index_results(task, metrics)}]
    return front


def model_index_results(task, metrics: dict) -> list[dict]:
    config = task.config
    train_file = Path(config.train_file or "training data")
    name = hub_dataset(config.dataset) or train_file.parent.name or train_file.name  # conll2003/train.txt: conll2003
    results = []
    for split in ("dev", "test"):
        if split not in metrics:
            continue
        values = [
            {"type": key, "value": value, "name": f"{split} {key}"}
            for key, value in metrics[split].items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        ]
        dataset = {"name": name, "type": name, "split": split}
        kind = {"type": task.pipeline_tag or task.name}
        results.append({"task": kind, "dataset": dataset, "metrics": values})
    return results


def hub_dataset(dataset: str | None) -> str | None:
    """A dataset name as the Hub knows it; None for local files and folders (their paths mean nothing elsewhere)."""
    if not dataset or Path(dataset).exists() or dataset.startswith((".", "/", "~")):
        return None
    return dataset


def origin(config) -> str:
    if config.init_from:
        return f"fine-tuned from the seqnlp model `{Path(config.init_from).name}`"
    vectors = getattr(config, "pretrained_vectors", None)
    if vectors:
        return f"trained from scratch, its word embeddings started from the pretrained vectors `{Path(vectors).name}`"
    return "trained from scratch"


def architecture(config) -> str:
    directions = "bidirectional " if config.bidirectional else ""
    layers = "layer" if config.layers == 1 else "layers"
    return f"{config.layers} {directions}{config.cell.upper()} {layers} of {config.hidden} units"


def scores_section(metrics: dict, metric: str) -> list[str]:
    rows = [
        f"| {split} | {key} | {value:.4f} |"
        for split in ("dev", "test")
        if split in metrics
        for key, value in metrics[split].items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    ]
    train = metrics.get("train", {})
    lines = [
        "## Scores",
        "",
        f"Selected by dev {metric} ({metrics.get('protocol', {}).get('selected_on', 'dev set')}); "
        f"best epoch {train.get('best_epoch')} of {train.get('epochs')}, {train.get('seconds', 0) / 60:.1f} minutes.",
        "",
        "| split | metric | value |",
        "| --- | --- | --- |",
        *rows,
        "",
    ]
    calibrated = metrics.get("calibration")
    if calibrated:
        eces = ece_changes(calibrated)
        lines += [
            f"Probabilities are calibrated: scores are divided by a temperature of {calibrated['temperature']:.3f} "
            f"fitted on the dev set ({calibrated['objective']}); expected calibration error before → after: {eces} "
            "(the dev figure is measured on the data the temperature was fitted on). No prediction depends on it.",
            "",
        ]
    return lines


def ece_changes(calibrated: dict) -> str:
    """``dev 0.0812 -> 0.0203; test ...``: each split's expected calibration error before and after the temperature
    (``metrics.json``'s ``calibration``)."""
    changes = [(key[: -len("_ece")], value) for key, value in calibrated.items() if key.endswith("_ece")]
    return "; ".join(f"{split} {before:.4f} -> {after:.4f}" for split, (before, after) in changes if before is not None)


def data_section(metrics: dict, summary: dict) -> list[str]:
    protocol = metrics.get("protocol", {})
    data = protocol.get("data")
    lines = ["## Training data", ""]
    if isinstance(data, dict):
        lines += ["| role | file | sha256 |", "| --- | --- | --- |"]
        lines += [f"| {role} | `{Path(item['path']).name}` | `{item['sha256']}` |" for role, item in data.items()]
    elif data:
        lines.append(f"HuggingFace dataset `{data}`.")
    counts = [f"{key}: {value:,}" for key, value in summary.items() if key.endswith(("examples", "tokens"))]
    lines += ["", "; ".join([*counts, f"seed {protocol.get('seed')}"]) + ".", ""]
    if metrics.get("pretrained_vectors"):
        lines += [f"Pretrained word vectors: {vectors_summary(metrics['pretrained_vectors'])}.", ""]
    return lines


def vectors_summary(report: dict) -> str:
    """The source of a run's pretrained vectors (its licence where it is a named source) and their coverage."""
    if "source" in report:
        source = f"`{report['source']}`, {report['description']} (licence: {report['licence']}; matched "
        source += f"{report['matched']})"
    else:
        source = f"the file `{Path(report['file']).name}`"
    found = f"{report['found']:,} of {report['vocab_size']:,} vocabulary words found ({report['coverage']:.1%}; "
    found += f"{report['found_lowercase']:,} through their lowercase form)"
    if "token_coverage" in report:
        found += f", {report['token_coverage']:.1%} of the training tokens"
    if report.get("columns", 0) > report.get("dimensions", 0):
        found += f"; their {report['dimensions']} dimensions fill the first of the word embedding's {report['columns']}"
    return f"{source}; {found}"


def usage_section(task) -> list[str]:
    text = task.usage_input
    return [
        "## Use",
        "",
        "```bash",
        "pip install 'seqnlp[train]'  # torch and what a PyTorch model needs",
        f"echo {text!r} | seqnlp predict MODEL_DIR --format json",
        "```",
        "",
        "```python",
        "import seqnlp",
        "",
        'model = seqnlp.load("MODEL_DIR")  # or "hf://ORG/NAME"',
        f"print(model.predict([{text!r}])[0].to_dict())",
        "```",
        "",
    ]


def limitations_section(task) -> list[str]:
    languages = task.languages()
    language = " → ".join(languages) if languages else "the training data's language"
    return [
        "## Limitations",
        "",
        f"Trained on the data above only (no pretrained language model): it knows {language} and the "
        "domain and spelling of that data, and it scores lower on text unlike it. The scores are the dev set's "
        "(and the test set's, where one was given), measured once with the seed above.",
        "",
    ]


def write_model_card(directory, task, parameters: int, metrics: dict | None = None, summary: dict | None = None):
    Path(directory, "README.md").write_text(model_card(task, parameters, metrics, summary), encoding="utf-8")
