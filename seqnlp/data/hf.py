"""HuggingFace ``datasets`` adapter: hub name, ``save_to_disk`` folder, or data files."""

from __future__ import annotations

import os

from seqnlp.errors import DataError

_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".txt": "text"}


def load_split(name_or_path: str, split: str, config: str | None = None, missing_ok: bool = False):
    """Load one split as a ``datasets.Dataset`` (None for a missing split when ``missing_ok``).

    ``name_or_path`` is a folder written by ``save_to_disk`` (a ``DatasetDict`` or a single
    ``Dataset``), a data file (json/jsonl/csv/tsv/parquet/txt), a folder of data files, or a hub name.
    """
    import datasets

    source = name_or_path
    try:
        if os.path.isdir(source) and (
            os.path.exists(os.path.join(source, "dataset_dict.json")) or os.path.exists(os.path.join(source, "state.json"))
        ):
            loaded = datasets.load_from_disk(source)
        elif os.path.isfile(source):
            extension = os.path.splitext(source)[1].lower()
            if extension not in _FILE_BUILDERS:
                raise DataError(f"cannot load a dataset from a {extension or 'extensionless'} file (use json, jsonl, csv, tsv, parquet or txt)", source)
            kwargs = {"delimiter": "\t"} if extension == ".tsv" else {}
            loaded = datasets.load_dataset(_FILE_BUILDERS[extension], data_files={split: source}, **kwargs)
        else:
            loaded = datasets.load_dataset(source, config)
    except DataError:
        raise
    except Exception as err:  # datasets raises many types: report them in one line
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"could not load dataset: {message}", source) from None
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            if missing_ok:
                return None
            raise DataError(f"dataset has no split {split!r} (splits: {', '.join(loaded)})", source)
        return loaded[split]
    return loaded


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
