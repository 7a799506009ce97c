"""Raw text to tokens the way CoNLL-2003 is tokenized, keeping each token's character offsets; the word features
the models read (casing classes, normalized spellings). No torch here: the ONNX runtime tokenizes with these too.

CoNLL-2003 (Reuters) splits punctuation from words (``Berlin .``), splits the clitics ``'s``,
``n't``, ``'re``... (``John 's``, ``do n't``), and keeps abbreviations (``U.S.``), numbers
(``1,000.5``, ``10:30``), hyphenated words (``Franco-German``), names like ``O'Neill`` and
e-mail / web addresses whole.
"""

from __future__ import annotations

import re

from seqnlp.errors import DataError

_TOKEN = re.compile(
    r"""
      https?://\S+[^\s.,;:!?'")\]]                   # web addresses, without the punctuation that follows them
    | [\w.+-]+@\w+(?:\.\w+)+                          # e-mail addresses
    | (?:[^\W\d_]\.){2,}                                # abbreviations: U.S., e.g.
    | \d+(?:[.,:/]\d+)+                                # numbers with separators: 1,000.5  10:30  1/2
    | \w+(?=n't\b)                                     # do|n't
    | n't\b
    | '(?:s|re|ve|ll|d|m)\b                             # clitics: 's 're 've 'll 'd 'm
    | \w+(?='(?:s|re|ve|ll|d|m)\b)                     # the word before a clitic
    | \w+(?:[-'&]\w+)*                                 # words, with inner hyphens, apostrophes and ampersands
    | \.{2,}                                            # ellipses
    | \S                                               # any other character on its own
    """,
    re.VERBOSE | re.IGNORECASE,
)


def tokenize(text: str) -> list[tuple[str, int, int]]:
    """``(token, start, end)`` for each token of ``text``: ``text[start:end] == token``."""
    return [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def whitespace_tokens(text: str) -> list[tuple[str, int, int]]:
    """Pre-tokenized input: the tokens are what whitespace separates, with their offsets."""
    return [(m.group(), m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def from_tokens(tokens) -> tuple[str, list[tuple[str, int, int]]]:
    """Pre-tokenized input given as a list: the text is the tokens joined by single spaces."""
    if isinstance(tokens, str) or not all(isinstance(t, str) for t in tokens):
        raise DataError("a tokenized input must be a list of strings")
    spans, position = [], 0
    for token in tokens:
        spans.append((token, position, position + len(token)))
        position += len(token) + 1
    return " ".join(tokens), [s for s in spans if s[0]]


_WORDS = re.compile(r"\w+|[^\w\s]")


def word_tokens(text: str) -> list[str]:
    """Runs of word characters and single punctuation marks: how the word-level classifier splits a text."""
    return _WORDS.findall(text)


MAX_WORD_CHARS = 30  # a word's character features read its first 30 characters
_DIGITS = re.compile(r"\d")
CASINGS = ("lower", "upper", "initial_upper", "numeric", "mainly_numeric", "has_digit", "other")


def normalize_word(token: str, lowercase: bool) -> str:
    """The spelling the word embedding looks up: lowercased with every digit 0, or the token as it is."""
    return _DIGITS.sub("0", token.lower()) if lowercase else token


def casing(token: str) -> int:
    """Casing class of ``token`` as an id from 1 (0 is padding), after Reimers & Gurevych (2017)."""
    digits = sum(ch.isdigit() for ch in token)
    if token.isdigit():
        kind = "numeric"
    elif digits / max(1, len(token)) > 0.5:
        kind = "mainly_numeric"
    elif token.islower():
        kind = "lower"
    elif token.isupper():
        kind = "upper"
    elif token[:1].isupper():
        kind = "initial_upper"
    elif digits:
        kind = "has_digit"
    else:
        kind = "other"
    return CASINGS.index(kind) + 1
