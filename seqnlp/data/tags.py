"""Entity tag schemes (IOB1, IOB2, BIOES): validation and conversion through entity spans."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

SCHEMES = ("iob1", "iob2", "bioes")


def split_tag(tag: str) -> tuple[str, str | None]:
    """``"B-PER" -> ("B", "PER")``, ``"O" -> ("O", None)``; raises ValueError for anything else."""
    if tag == "O":
        return "O", None
    prefix, sep, entity = tag.partition("-")
    if not sep or prefix not in ("B", "I", "E", "S") or not entity:
        shown = tag if len(tag) <= 40 else tag[:40] + f"... ({len(tag)} characters)"
        raise ValueError(f"invalid tag {shown!r}: expected O or a B-/I-/E-/S- prefix followed by a type")
    return prefix, entity


def scheme_tags(entity_types, scheme: str) -> list[str]:
    """Every tag ``scheme`` writes for ``entity_types``, and O: a type seen only in two-token spans still gets S-."""
    prefixes = ("B", "I", "E", "S") if scheme == "bioes" else ("B", "I")
    return ["O"] + [f"{p}-{t}" for t in sorted(entity_types) for p in prefixes]


def to_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entity spans ``(type, start, end_exclusive)`` from IOB1, IOB2 or BIOES tags.

    Lenient like conlleval: an ``I-X`` that does not continue an ``X`` entity starts one,
    which reads IOB1 and IOB2 alike.
    """
    spans: list[tuple[str, int, int]] = []
    current: list | None = None  # [type, start]
    for i, tag in enumerate(tags):
        prefix, entity = split_tag(tag)
        starts = prefix in ("B", "S") or (prefix in ("I", "E") and (current is None or current[0] != entity))
        if prefix == "O" or starts:
            if current is not None:
                spans.append((current[0], current[1], i))
                current = None
        if prefix != "O" and (starts or current is None):
            current = [entity, i]
        if prefix in ("E", "S"):
            spans.append((current[0], current[1], i + 1))
            current = None
    if current is not None:
        spans.append((current[0], current[1], len(tags)))
    return spans


def from_spans(spans: Sequence[tuple[str, int, int]], length: int, scheme: str) -> list[str]:
    """Tags of ``length`` tokens in ``scheme`` ("iob2" or "bioes"; "iob1" writes B only between touching entities)."""
    tags = ["O"] * length
    previous_end, previous_type = -1, None
    for entity, start, end in spans:
        if scheme == "bioes":
            if end - start == 1:
                tags[start] = f"S-{entity}"
            else:
                tags[start] = f"B-{entity}"
                tags[start + 1 : end - 1] = [f"I-{entity}"] * (end - start - 2)
                tags[end - 1] = f"E-{entity}"
        else:
            tags[start:end] = [f"I-{entity}"] * (end - start)
            if scheme == "iob2" or (previous_end == start and previous_type == entity):
                tags[start] = f"B-{entity}"
        previous_end, previous_type = end, entity
    return tags


def convert(tags: Sequence[str], scheme: str) -> list[str]:
    """Convert tags in any supported scheme to ``scheme``."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; choose from {', '.join(SCHEMES)}")
    return from_spans(to_spans(tags), len(tags), scheme)


def allowed_transitions(labels: Sequence[str], scheme: str):
    """Boolean masks ``(start[K], transitions[K, K], end[K])`` of the moves valid in ``scheme``.

    ``transitions[i, j]`` says whether tag ``j`` may follow tag ``i``.
    """
    import torch

    parts = [split_tag(label) for label in labels]
    k = len(labels)
    start = torch.ones(k, dtype=torch.bool)
    end = torch.ones(k, dtype=torch.bool)
    trans = torch.ones(k, k, dtype=torch.bool)
    inside = ("I", "E") if scheme == "bioes" else ("I",)
    open_prefixes = ("B", "I") if scheme == "bioes" else ()
    for j, (pj, ej) in enumerate(parts):
        if pj in inside:
            start[j] = False
        if pj in open_prefixes:
            end[j] = False
        for i, (pi, ei) in enumerate(parts):
            continues = pi in ("B", "I") and ei == ej
            if pj in inside and not continues:
                trans[i, j] = False
            if scheme == "bioes" and pi in ("B", "I") and not (pj in ("I", "E") and ei == ej):
                trans[i, j] = False
    return start, trans, end


def continuation_mask(labels: Sequence[str]):
    """``[K, K]`` booleans (a NumPy array): tag ``j`` after tag ``i`` extends the same entity (``B-X``/``I-X`` then
    ``I-X``/``E-X``)."""
    import numpy as np

    parts = [split_tag(label) for label in labels]
    return np.array(
        [[pi in ("B", "I") and pj in ("I", "E") and ei == ej for pj, ej in parts] for pi, ei in parts], dtype=bool
    ).reshape(len(parts), len(parts))


def entity_types(labels: Sequence[str]) -> list[str]:
    """The entity types a tag set names, sorted (``B-PER``, ``I-PER`` -> ``PER``)."""
    return sorted({tag.split("-", 1)[1] for tag in labels if tag != "O"})


def sentence_spans(tags: Sequence[Sequence[str]]) -> list[tuple[int, int, int, str]]:
    """``(sentence, start, end_exclusive, type)`` of every entity in a batch of tag sequences."""
    return [(row, start, end, entity) for row, row_tags in enumerate(tags) for entity, start, end in to_spans(row_tags)]


@dataclass
class SpanPositions:
    """Flat indices for scoring many entity spans of a batch at once (``CRF.span_log_probs``): per span its
    sentence, first and last token, first and last tag, and whether it ends its sentence; per token of every span
    ``(span, sentence, position, tag)``; per move inside a span ``(span, previous tag, next tag)``."""

    rows: list[int] = field(default_factory=list)
    firsts: list[int] = field(default_factory=list)
    lasts: list[int] = field(default_factory=list)
    first_tags: list[int] = field(default_factory=list)
    last_tags: list[int] = field(default_factory=list)
    ends_sentence: list[bool] = field(default_factory=list)
    token_spans: list[int] = field(default_factory=list)
    token_rows: list[int] = field(default_factory=list)
    token_positions: list[int] = field(default_factory=list)
    token_tags: list[int] = field(default_factory=list)
    move_spans: list[int] = field(default_factory=list)
    move_from: list[int] = field(default_factory=list)
    move_to: list[int] = field(default_factory=list)


def span_positions(spans: Sequence[tuple[int, int, Sequence[int]]], lengths: Sequence[int]) -> SpanPositions:
    """``SpanPositions`` of ``(sentence, first token, tag ids)`` spans, for sentences of ``lengths`` tokens."""
    index = SpanPositions()
    for number, (row, first, tags) in enumerate(spans):
        last = first + len(tags) - 1
        index.rows.append(row)
        index.firsts.append(first)
        index.lasts.append(last)
        index.first_tags.append(tags[0])
        index.last_tags.append(tags[-1])
        index.ends_sentence.append(last == lengths[row] - 1)
        index.token_spans += [number] * len(tags)
        index.token_rows += [row] * len(tags)
        index.token_positions += range(first, last + 1)
        index.token_tags += tags
        index.move_spans += [number] * (len(tags) - 1)
        index.move_from += tags[:-1]
        index.move_to += tags[1:]
    return index


def tagged_sentences(tags: Sequence[Sequence[str]], spans, scores) -> list[tuple[list[str], list[tuple]]]:
    """Each sentence's IOB2 tags and entities ``(type, start, end, score)``, from ``sentence_spans(tags)`` and a
    score per span."""
    entities: list[list] = [[] for _ in tags]
    for (row, start, end, entity), score in zip(spans, scores):
        entities[row].append((entity, start, end, score))
    return [(convert(row_tags, "iob2"), found) for row_tags, found in zip(tags, entities)]
