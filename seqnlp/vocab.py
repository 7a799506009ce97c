"""Vocabularies (word, character, label) and a SentencePiece subword tokenizer."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from seqnlp.errors import DataError

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"


class Vocab:
    """A bidirectional token <-> id map.

    ``specials`` come first, in the order given (so ``<pad>`` is id 0 when listed first).
    A vocabulary without ``unk`` is *closed*: encoding an unknown symbol raises
    ``KeyError``, which label vocabularies use to report unknown labels.
    ``sources`` records where the entries came from, in order: ``[{"source", "entries"}]`` (the
    training data, then each fine-tuning run's data that extended it).
    """

    def __init__(
        self, tokens: Sequence[str], unk: str | None = UNK, pad: str | None = PAD, sources: list[dict] | None = None
    ):
        self.itos = list(tokens)
        self.sources = list(sources or [])
        self.counts: Counter | None = None  # a built vocabulary's training counts (not saved): vector coverage
        self.stoi = {tok: i for i, tok in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("duplicate tokens in vocabulary")
        self.unk = unk
        self.pad = pad
        self.unk_id = self.stoi[unk] if unk is not None else None
        self.pad_id = self.stoi[pad] if pad is not None else None

    @classmethod
    def build(
        cls,
        sequences: Iterable[Iterable[str]],
        min_freq: int = 1,
        max_size: int | None = None,
        specials: Sequence[str] = (PAD, UNK),
        unk: str | None = UNK,
        pad: str | None = PAD,
        source: str = "training data",
    ) -> Vocab:
        """Count symbols; keep those seen ``min_freq`` times, most frequent first (ties alphabetical)."""
        counts = Counter(tok for seq in sequences for tok in seq)
        kept = sorted(
            (t for t, c in counts.items() if c >= min_freq and t not in specials), key=lambda t: (-counts[t], t)
        )
        if max_size is not None:
            kept = kept[: max(0, max_size - len(specials))]
        tokens = list(specials) + kept
        vocab = cls(tokens, unk=unk, pad=pad, sources=[{"source": source, "entries": len(tokens)}])
        vocab.counts = counts
        return vocab

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __getitem__(self, token: str) -> int:
        if self.unk_id is None:
            return self.stoi[token]
        return self.stoi.get(token, self.unk_id)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        return [self[t] for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids]

    def to_dict(self) -> dict:
        out = {"tokens": self.itos, "unk": self.unk, "pad": self.pad}
        if self.sources:
            out["sources"] = self.sources
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Vocab:
        """Rebuild a saved vocabulary; saved files are untrusted, so their shape is checked."""
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise DataError("a vocabulary must be an object whose 'tokens' is a list of strings")
        for special in ("unk", "pad"):
            if data.get(special) is not None and data[special] not in tokens:
                raise DataError(f"the vocabulary's {special} token {str(data[special])[:40]!r} is not among its tokens")
        sources = data.get("sources") or []
        if (
            not isinstance(sources, list)
            or not all(
                isinstance(s, dict)
                and isinstance(s.get("source"), str)
                and type(s.get("entries")) is int
                and s["entries"] >= 0
                for s in sources
            )
            or (sources and sum(s["entries"] for s in sources) != len(tokens))
        ):
            raise DataError(
                "a vocabulary's 'sources' must be a list of {source, entries} whose entries add up to its tokens"
            )
        try:
            return cls(tokens, unk=data.get("unk"), pad=data.get("pad"), sources=sources)
        except ValueError as err:
            raise DataError(f"invalid vocabulary: {err}") from None


def label_vocab(labels: Iterable[str]) -> Vocab:
    """A closed vocabulary of labels in sorted order (no padding, no unknown)."""
    return Vocab(sorted(set(labels)), unk=None, pad=None)


class SubwordTokenizer:
    """A SentencePiece model, trained in memory and stored as one ``.model`` file in the model directory.

    Ids: 0 ``<pad>``, 1 ``<unk>``, 2 ``<s>``, 3 ``</s>``.
    """

    def __init__(self, model_proto: bytes):
        import sentencepiece as spm

        self.model_proto = model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)

    @classmethod
    def load(cls, path) -> SubwordTokenizer:
        return cls(Path(path).read_bytes())

    def save(self, path) -> None:
        Path(path).write_bytes(self.model_proto)

    @classmethod
    def train(
        cls, texts: Iterable[str], vocab_size: int = 8000, model_type: str = "unigram", character_coverage: float = 1.0
    ) -> SubwordTokenizer:
        """Train on sentences. ``vocab_size`` is an upper bound: a tiny corpus gets a smaller vocabulary."""
        import io

        import sentencepiece as spm

        sentences = [t for t in texts if t.strip()]
        if not sentences:
            raise DataError("cannot train a SentencePiece model on empty text")

        writer = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=writer,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            pad_id=0,
            unk_id=1,
            bos_id=2,
            eos_id=3,
            pad_piece=PAD,
            unk_piece=UNK,
            bos_piece=BOS,
            eos_piece=EOS,
            minloglevel=2,
            hard_vocab_limit=False,
        )
        return cls(writer.getvalue())

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    @property
    def pieces(self) -> Vocab:
        """The pieces as a closed ``Vocab`` (id -> piece), to match two models' pieces by their text."""
        return Vocab([self.sp.id_to_piece(i) for i in range(len(self))], unk=None, pad=None)

    @property
    def pad_id(self) -> int:
        return self.sp.pad_id()

    @property
    def unk_id(self) -> int:
        return self.sp.unk_id()

    @property
    def bos_id(self) -> int:
        return self.sp.bos_id()

    @property
    def eos_id(self) -> int:
        return self.sp.eos_id()

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def sample(self, texts: list[str], alpha: float, seed: int) -> list[list[int]]:
        """One random segmentation of each text (subword regularization, Kudo 2018), the same for the same ``seed``.

        Segmentations are drawn from all of them with probabilities proportional to ``P ** alpha``: the
        smaller ``alpha``, the more often a less likely one comes up.
        """
        import sentencepiece as spm

        spm.set_random_generator_seed(seed)
        return self.sp.encode(list(texts), enable_sampling=True, alpha=alpha, nbest_size=-1, num_threads=1)

    def decode(self, ids: Sequence[int]) -> str:
        return self.sp.decode(list(ids))
