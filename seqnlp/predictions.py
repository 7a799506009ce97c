"""What ``predict`` returns, for every task: dataclasses with ``to_dict()`` (the JSON of ``--format json`` and
of ``seqnlp serve``) and ``to_text()`` (the line ``seqnlp predict`` writes by default)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class Prediction:
    def to_dict(self) -> dict:
        return _plain(self)

    def to_text(self) -> str:
        raise NotImplementedError


@dataclass
class Entity:
    text: str  # input[start:end]
    type: str
    start: int  # character offsets into the input string
    end: int
    score: float  # the CRF's probability of exactly this entity (forward-backward marginal of the span)
    token_start: int  # token span [token_start, token_end)
    token_end: int


@dataclass
class Token:
    text: str
    start: int
    end: int
    tag: str  # IOB2


@dataclass
class Tagging(Prediction):
    text: str
    tokens: list[Token] = field(default_factory=list)
    entities: list[Entity] = field(default_factory=list)

    def to_text(self) -> str:
        return " ".join(f"{t.text}/{t.tag}" for t in self.tokens)

    def to_dict(self) -> dict:
        # Spelled out: a served tagger answers with every token, and the generic walk (``_plain``) costs twice this.
        return {
            "text": self.text,
            "tokens": [{"text": t.text, "start": t.start, "end": t.end, "tag": t.tag} for t in self.tokens],
            "entities": [dataclasses.asdict(e) for e in self.entities],
        }

    def to_conll(self) -> str:
        return "".join(f"{t.text}\t{t.tag}\n" for t in self.tokens)


@dataclass
class Classification(Prediction):
    text: str
    label: str
    score: float  # the label's probability
    probabilities: dict[str, float]  # every class
    truncated: bool = False  # longer than max_length: the label reads only its first max_length tokens

    def to_text(self) -> str:
        return f"{self.label}\t{self.score:.4f}"


@dataclass
class Translation(Prediction):
    source: str
    translation: str
    score: float
    n_best: list[dict] = field(default_factory=list)  # [{"translation", "score"}], best first, when n_best > 1

    def to_text(self) -> str:
        if not self.n_best:
            return self.translation
        return "\t".join(f"{h['translation']} ||| {h['score']:.4f}" for h in self.n_best)


@dataclass
class Generation(Prediction):
    prompt: str
    continuation: str

    def to_text(self) -> str:
        """One line per record: a backslash is written ``\\\\`` and a newline ``\\n``."""
        return self.continuation.replace("\\", "\\\\").replace("\n", "\\n")


def _plain(value):
    """Dataclasses as dicts, recursively; unlike ``dataclasses.asdict`` nothing is deep-copied (the fields are plain
    data)."""
    if dataclasses.is_dataclass(value):
        return {name: _plain(item) for name, item in vars(value).items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value
