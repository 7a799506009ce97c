"""Fine-tuning a trained model on new data: label sets and vocabularies that change, weights carried over row by row.

A task's ``adapt`` turns its saved vocabularies into the new run's (``relabel``, ``extend``) and says, for
every new id, which old id's weights it starts from (-1: a fresh row, as a new model would have).
``transfer_weights`` then copies the trained weights into the new model through those maps, for
the tensors the task's ``weight_axes`` names, and whole for every other tensor.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from seqnlp.errors import ConfigError
from seqnlp.vocab import Vocab


@dataclass
class Adaptation:
    maps: dict[str, list[int]] = field(default_factory=dict)  # vocabulary -> old id of each new id (-1: fresh)
    notes: dict[str, str] = field(default_factory=dict)  # what was kept, added, dropped, reset: printed and reported


def parse_label_map(text: str) -> dict[str, str]:
    """``"person=PER,location=LOC"`` -> ``{"person": "PER", "location": "LOC"}``."""
    mapping = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        new, sep, old = item.partition("=")
        if not sep or not new.strip() or not old.strip():
            raise ConfigError(f"--label-map expects NEW=OLD pairs separated by commas, not {item[:60]!r}")
        mapping[new.strip()] = old.strip()
    return mapping


def relabel(
    old: list[str], seen: Iterable[str], policy: str, label_map: dict[str, str]
) -> tuple[list[str], dict[str, str | None], str]:
    """The new run's labels, the old label each one starts from (None: fresh), and a one-line account.

    ``policy`` "keep" keeps the model's labels that the new data lacks; "replace" drops them.
    """
    seen = sorted(set(seen))
    for new, known in label_map.items():
        if known not in old:
            raise ConfigError(f"--label-map {new}={known}: the model has no label {known!r} (it has: {', '.join(old)})")
    kept = [label for label in old if label in seen or policy == "keep"]
    added = [label for label in seen if label not in old]
    source = {label: label for label in kept}
    source.update({label: label_map.get(label) for label in added})
    dropped = [label for label in old if label not in kept]
    account = (
        f"kept {len(kept)} ({', '.join(kept) or '-'}); added {len(added)} "
        f"({', '.join(f'{a} from {source[a]}' if source[a] else a for a in added) or '-'}); "
        f"dropped {len(dropped)} ({', '.join(dropped) or '-'})"
    )
    return kept + added, source, account


def extend(
    old: Vocab, sequences: Iterable[Iterable[str]], min_freq: int = 1, source: str = "fine-tuning data"
) -> tuple[Vocab, int]:
    """``old`` with the symbols of ``sequences`` it lacks appended (most frequent first); every old id stays.

    The new vocabulary's ``sources`` say how many entries ``source`` added.
    """
    counts = Counter(symbol for sequence in sequences for symbol in sequence if symbol not in old.stoi)
    added = sorted((s for s, c in counts.items() if c >= min_freq), key=lambda s: (-counts[s], s))
    sources = old.sources or [{"source": "the base model", "entries": len(old)}]
    if added:
        sources = [*sources, {"source": source, "entries": len(added)}]
    return Vocab(old.itos + added, unk=old.unk, pad=old.pad, sources=sources), len(added)


def index_map(new: list[str], old: Vocab, source: dict[str, str | None] | None = None, missing: int = -1) -> list[int]:
    """For each new symbol, the old id its weights start from (through ``source``, when given), or ``missing``."""
    out = []
    for symbol in new:
        known = source.get(symbol) if source is not None else symbol
        out.append(old.stoi.get(known, missing) if known is not None else missing)
    return out


def extension_map(new: Vocab, old: Vocab, new_rows_from: str) -> tuple[list[int], str]:
    """The row map of a vocabulary ``extend`` made from ``old``, and how its added rows start: as a copy of
    ``old``'s unknown symbol (``new_rows_from="unk"``, where ``old`` has one) or fresh."""
    if new_rows_from == "unk" and old.unk is not None:
        return index_map(new.itos, old, missing=old.unk_id), " (starting as the unknown symbol)"
    return index_map(new.itos, old), " (fresh rows)"


def head_adaptation(config, labels: Vocab, old: Vocab, source: dict, name: str, noted: str, account: str) -> Adaptation:
    """The adaptation of a classifier's output rows from the base model's labels ``old`` to ``labels`` (each new
    label starting from its ``source`` label's row, or fresh; all fresh with ``--reset-head``): the row map under
    ``name``, ``relabel``'s account under ``noted``."""
    adaptation = Adaptation(notes={noted: account})
    if config.reset_head:
        adaptation.maps[name] = [-1] * len(labels)
        adaptation.notes["output layer"] = "reset (--reset-head)"
    else:
        adaptation.maps[name] = index_map(labels.itos, old, source)
    return adaptation


def extend_vocabulary(
    adaptation: Adaptation, name: str, old: Vocab, sequences, config, source: str, min_freq: int = 1, noted: str = ""
) -> Vocab:
    """``old`` extended with the new data's symbols (``extend``); its row map goes into ``adaptation`` under
    ``name`` and a note under ``noted`` (default: ``name``)."""
    new, added = extend(old, sequences, min_freq, source)
    adaptation.maps[name], start = extension_map(new, old, config.new_rows_from)
    adaptation.notes[noted or name] = f"{len(old)} from the model, {added} added from the new training data{start}"
    return new


def subword_adaptation(old, new, name: str, texts: Iterable[str]) -> tuple[list[int] | None, str]:
    """The row map from SentencePiece model ``old`` to ``new`` (None when ``new`` is ``old``), and a one-line account.

    Kept, the account gives the share of ``texts``' subwords that are unknown to it: a high share
    means the new data's language or script is not the model's, and ``--new-vocab`` is needed.
    """
    if new is old:
        ids = [i for text in texts for i in old.encode(text)]
        unknown = sum(i == old.unk_id for i in ids) / max(1, len(ids))
        return (
            None,
            f"the model's SentencePiece model kept ({len(old)} pieces; {unknown:.2%} of the new {name} subwords "
            "unknown)",
        )
    mapping = index_map(new.pieces.itos, old.pieces)
    known = sum(i >= 0 for i in mapping)
    return mapping, (
        f"a new SentencePiece model of {len(new)} pieces (--new-vocab): {known} start from the model's "
        f"embedding rows, {len(new) - known} fresh"
    )


def transfer_weights(
    old_state: dict, model: torch.nn.Module, axes: dict[str, tuple[str, tuple[int, ...]]], maps: dict[str, list[int]]
) -> None:
    """Copy ``old_state`` into ``model``: rows of the tensors in ``axes`` through ``maps``, other tensors whole."""
    with torch.no_grad():
        for name, new in model.state_dict().items():
            old = old_state.get(name)
            if old is None:
                continue
            vocabulary, dims = axes.get(name, (None, ()))
            mapping = maps.get(vocabulary)
            if mapping is None:
                if old.shape != new.shape:
                    raise ConfigError(
                        f"--init-from: tensor {name!r} has shape {list(old.shape)}, these settings make "
                        f"{list(new.shape)}"
                    )
                new.copy_(old)
                continue
            index = torch.tensor(mapping, dtype=torch.long)
            rows = (index >= 0).nonzero().squeeze(1)
            if len(dims) == 1:
                new[rows] = old[index[rows]].to(new.dtype)
            # a square tag-to-tag matrix (CRF transitions): the known block is copied, new rows and columns stay fresh
            else:
                new[rows[:, None], rows[None, :]] = old[index[rows][:, None], index[rows][None, :]].to(new.dtype)


FREEZABLE = {"embeddings": ("embedding", "embed"), "encoder": ("encoder", "rnn")}


def freeze(model: torch.nn.Module, parts: list[str]) -> None:
    """Fix the weights of ``parts`` (embeddings, encoder) for the whole run."""
    for part in parts:
        for owner in getattr(model, "members", [model]):  # an ensemble's members each have their own
            module = next((getattr(owner, name) for name in FREEZABLE[part] if hasattr(owner, name)), None)
            if module is None:
                raise ConfigError(f"--freeze {part}: this model has no {part} to freeze")
            module.requires_grad_(False)
