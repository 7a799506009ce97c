"""HuggingFace ``datasets`` adapter: hub name, ``save_to_disk`` folder, or data files."""

from __future__ import annotations

import os

from seqnlp.errors import DataError

_FILE_BUILDERS = {
    ".json": "json",
    ".jsonl": "json",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".txt": "text",
}


def load(name_or_path: str, config: str | None = None):
    """A ``datasets.DatasetDict`` (named splits) or a single ``datasets.Dataset`` (one unnamed split).

    ``name_or_path`` is a folder written by ``save_to_disk`` (either kind), a data file
    (json/jsonl/csv/tsv/parquet/txt: one split), a folder of data files named by split
    (``train.jsonl``, ``validation.jsonl``, ...), or a hub name (offline from the HF cache when
    ``HF_DATASETS_OFFLINE=1``).
    """
    import datasets

    datasets.disable_progress_bars()  # an error must stay one line; a training run has its own progress bar
    datasets.logging.set_verbosity_error()
    source = name_or_path
    try:
        if os.path.isdir(source) and (
            os.path.exists(os.path.join(source, "dataset_dict.json"))
            or os.path.exists(os.path.join(source, "state.json"))
        ):
            return datasets.load_from_disk(source)
        if os.path.isfile(source):
            extension = os.path.splitext(source)[1].lower()
            if extension not in _FILE_BUILDERS:
                raise DataError(
                    f"cannot load a dataset from a {extension or 'extensionless'} file (use json, jsonl, csv, tsv, "
                    "parquet or txt)",
                    source,
                )
            kwargs = {"delimiter": "\t"} if extension == ".tsv" else {}
            return datasets.load_dataset(_FILE_BUILDERS[extension], data_files=source, split="train", **kwargs)
        return datasets.load_dataset(source, config)
    except DataError:
        raise
    except Exception as err:  # datasets raises many types: report them in one line
        message = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise DataError(f"could not load dataset: {message}", source) from None


def load_split(name_or_path: str, split: str, config: str | None = None, role: str = "train"):
    """The split ``split`` as a ``datasets.Dataset``, for ``role`` (train / dev / test); None if absent.

    A single data file or ``Dataset`` has no split names: it serves as the training data only, never
    as its own dev or test set (model selection and the test score would come from the training data).
    A named split that is missing from a ``DatasetDict`` is an error for training and None otherwise.
    """
    import datasets

    loaded = load(name_or_path, config)
    if not isinstance(loaded, datasets.DatasetDict):
        return loaded if role == "train" else None
    if split not in loaded:
        if role != "train":
            return None
        raise DataError(f"dataset has no split {split!r} (splits: {', '.join(loaded)})", name_or_path)
    return loaded[split]


def is_single_split(name_or_path: str, config: str | None = None) -> bool:
    return not is_dataset_dict(load(name_or_path, config))


def is_dataset_dict(loaded) -> bool:
    import datasets

    return isinstance(loaded, datasets.DatasetDict)


def require_columns(dataset, columns, source: str) -> None:
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise DataError(f"dataset has no column {missing[0]!r} (columns: {', '.join(dataset.column_names)})", source)


def label_names(dataset, column: str) -> list[str] | None:
    """The ``ClassLabel`` names of ``column`` (plain or inside a ``Sequence``), or None."""
    feature = dataset.features[column]
    for _ in range(3):
        if hasattr(feature, "names"):
            return list(feature.names)
        feature = getattr(feature, "feature", None)
        if feature is None:
            return None
    return None
