"""Word embeddings, character-level word features, and pretrained vector loading."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence

from seqnlp.data.vectors import vectors_for
from seqnlp.nn.dropout import LockedDropout
from seqnlp.nn.gemm import linear


def scaled_embedding(num_embeddings: int, dim: int, padding_idx: int) -> nn.Embedding:
    """An ``nn.Embedding`` drawn from N(0, 1/dim) instead of PyTorch's N(0, 1), its padding row zero.

    Adam moves every weight by about the learning rate per step, whatever the weight's scale, so
    unit-scale embeddings barely leave their random start in a short run: the translator's were still
    at std 0.94 after its hour on Multi30k. Drawn at 1/sqrt(dim) (as in fairseq's Transformer) they
    ended that hour at std 0.15, and beam-5 val BLEU rose from 42.03 to 42.93 (seed 1; seed 2: 41.70 to 42.55;
    same decoding settings).
    """
    embedding = nn.Embedding(num_embeddings, dim, padding_idx=padding_idx)
    nn.init.normal_(embedding.weight, std=dim**-0.5)
    with torch.no_grad():
        embedding.weight[padding_idx].zero_()
    return embedding


class CharFeatures(nn.Module):
    """One vector per word from its characters: a CNN with max pooling, or a BiLSTM's final states.

    Works on the *distinct* words of a batch (``chars[U, L]``), so frequent words cost one pass.
    The CNN keeps ``nn.Conv1d``'s weights but runs as one matrix product over the stacked windows
    (im2col): for a few dozen channels that is faster on CPU than the oneDNN convolution (docs/experiments.md).
    """

    def __init__(self, num_chars: int, char_dim: int = 30, out_dim: int = 50, kind: str = "cnn", kernel_size: int = 3):
        super().__init__()
        if kind not in ("cnn", "lstm"):
            raise ValueError(f"char encoder must be 'cnn' or 'lstm', not {kind!r}")
        if kernel_size % 2 == 0:
            raise ValueError(
                f"the character CNN's kernel size must be odd (one window centred on each character), not {kernel_size}"
            )
        self.kind = kind
        self.embed = nn.Embedding(num_chars, char_dim, padding_idx=0)
        if kind == "cnn":
            self.conv = nn.Conv1d(char_dim, out_dim, kernel_size, padding=kernel_size // 2)
        else:
            self.rnn = nn.LSTM(char_dim, out_dim // 2, batch_first=True, bidirectional=True)
        self.out_dim = out_dim if kind == "cnn" else 2 * (out_dim // 2)

    def forward(self, chars: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.embed(chars)  # U, L, C
        if self.kind == "cnn":
            k, length = self.conv.kernel_size[0], x.size(1)
            padded = F.pad(x, (0, 0, k // 2, k // 2))
            windows = torch.cat(
                [padded[:, i : i + length] for i in range(k)], dim=2
            )  # U, L, k*C: each character's window
            h = linear(
                windows, self.conv.weight.transpose(1, 2).reshape(self.conv.out_channels, -1), self.conv.bias
            )  # U, L, F
            return h.masked_fill((chars == 0).unsqueeze(2), float("-inf")).amax(dim=1)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.rnn(packed)
        return torch.cat([h_n[0], h_n[1]], dim=-1)


class WordCharEmbedding(nn.Module):
    """Word embedding, optionally concatenated with character features, with dropout.

    ``word_dropout`` replaces a fraction of word ids by ``<unk>`` during training, so the
    model learns to tag unknown words from their characters. ``rare_word_dropout`` does the same,
    at its own (higher) rate, for the rarest words: ids from ``rare_from`` on (vocabularies are
    sorted by frequency, so these are the words seen once). Unknown words at test time are mostly
    rare names, so ``<unk>`` learns from their look-alikes rather than from dropped function words
    (Lample et al., 2016).
    """

    def __init__(
        self,
        num_words: int,
        word_dim: int,
        num_chars: int = 0,
        char_dim: int = 30,
        char_out: int = 50,
        char_encoder: str = "cnn",
        dropout: float = 0.5,
        word_dropout: float = 0.0,
        rare_word_dropout: float = 0.0,
        rare_from: int | None = None,
        unk_id: int = 1,
        num_casings: int = 0,
        casing_dim: int = 0,
    ):
        super().__init__()
        self.words = nn.Embedding(num_words, word_dim, padding_idx=0)
        self.casing = nn.Embedding(num_casings, casing_dim, padding_idx=0) if casing_dim else None
        self.chars = CharFeatures(num_chars, char_dim, char_out, char_encoder) if num_chars else None
        self.dropout = LockedDropout(dropout)
        self.word_dropout = word_dropout
        self.rare_word_dropout = rare_word_dropout
        self.rare_from = num_words if rare_from is None else rare_from
        self.unk_id = unk_id
        self.out_dim = word_dim + (self.chars.out_dim if self.chars else 0) + casing_dim

    def forward(
        self,
        words: torch.Tensor,
        chars: torch.Tensor | None = None,
        char_lengths=None,
        char_index=None,
        casing: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.training and (self.word_dropout > 0 or self.rare_word_dropout > 0):
            rate = torch.where(
                words >= self.rare_from, max(self.word_dropout, self.rare_word_dropout), self.word_dropout
            )
            drop = torch.rand(words.shape, device=words.device) < rate
            words = words.masked_fill(drop & (words != 0), self.unk_id)
        x = self.words(words)
        if self.chars is not None:
            per_word = self.chars(chars, char_lengths)  # U, F
            x = torch.cat([x, per_word[char_index]], dim=-1)
        if self.casing is not None:
            x = torch.cat([x, self.casing(casing)], dim=-1)
        return self.dropout(x)


def load_vectors(spec, vocab, dim: int) -> tuple[torch.Tensor, dict]:
    """An embedding table of ``dim`` columns for ``vocab`` from pretrained vectors (``seqnlp.data.vectors``: a named
    source or a text file), and their coverage report. The vectors fill the first columns (all of them when their
    size is ``dim``); what they do not fill keeps a small random start, as words without a vector do; padding is
    zero. A wider table lets the trained columns learn what the vectors lack, next to them."""
    weight, _, report = vector_table(spec, vocab, dim)
    return weight, report


def vector_table(spec, vocab, dim: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """``load_vectors``' table, the ids of the rows the vectors filled, and the report."""
    rows, vectors, report = vectors_for(str(spec), vocab, dim)
    weight = torch.randn(len(vocab), dim) * 0.1
    weight[0] = 0
    found = torch.from_numpy(rows)
    weight[found, : vectors.shape[1]] = torch.from_numpy(vectors)
    return weight, found, {**report, "columns": dim}


def word_tables(model: nn.Module) -> list[nn.Embedding]:
    """The word embedding tables of ``model`` (one per ensemble member); empty for a model that reads no words."""
    return [module.words for module in model.modules() if isinstance(module, WordCharEmbedding)]


def start_from_vectors(spec: str | None, vocab, embeddings: list[nn.Embedding], rows=None) -> dict | None:
    """Copy the vectors ``spec`` names (a source or a file) of ``vocab`` into each of ``embeddings`` (all of one
    size): the whole table, or only the rows of the ids in ``rows`` that have a vector (the words fine-tuning
    added; the others keep their start); the coverage report, or None without vectors."""
    if not spec or not embeddings:
        return None
    weight, found, report = vector_table(spec, vocab, embeddings[0].embedding_dim)
    if rows is None:
        index = torch.arange(len(vocab))
    else:
        index = found[torch.isin(found, torch.as_tensor(list(rows), dtype=torch.long))]
        report["started_rows"] = len(index)
    with torch.no_grad():
        for embedding in embeddings:
            embedding.weight[index] = weight[index]
    return report
