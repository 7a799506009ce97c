"""What ``predict`` takes and returns, for every task: the checks of its inputs and options, dataclasses with
``to_dict()`` (the JSON of ``--format json`` and of ``seqnlp serve``) and ``to_text()`` (the line ``seqnlp predict``
writes by default), and the functions that build them from a model's outputs. No torch here: the PyTorch tasks, the
ONNX runtime and the server check and build alike."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
from dataclasses import dataclass, field

from seqnlp.errors import ConfigError


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


# Text generation's decoding options and their types; each runtime adds its own random ``generator`` type.
GENERATION_OPTIONS = {"max_chars": int, "temperature": float, "top_k": int, "top_p": float, "seed": int}
GENERATION_DEFAULTS = {"max_chars": 200, "temperature": 1.0, "top_k": 0, "top_p": 1.0}


def taggings(inputs: list, pretokenized: bool, tag_entities) -> list[Tagging]:
    """Each input tagged: a string (tokenized as CoNLL-2003 is, or at whitespace with ``pretokenized``) or a list of
    tokens.

    ``tag_entities(token lists)`` returns, per list, its IOB2 tags and its entities ``(type, token start, token end
    exclusive, probability)``; empty inputs never reach it.
    """
    from seqnlp.data.tokenize import from_tokens, tokenize, whitespace_tokens

    split = whitespace_tokens if pretokenized else tokenize
    texts, tokenized = [], []
    for item in inputs:
        text, tokens = (item, split(item)) if isinstance(item, str) else from_tokens(item)
        texts.append(text)
        tokenized.append(tokens)
    nonempty = [i for i, tokens in enumerate(tokenized) if tokens]
    with cycle_collection_paused():
        tagged = tag_entities([[t for t, _, _ in tokenized[i]] for i in nonempty])
        results = [Tagging(text) for text in texts]
        for i, (tags, entities) in zip(nonempty, tagged):
            tokens, text = tokenized[i], texts[i]
            results[i].tokens = [Token(t, start, end, tag) for (t, start, end), tag in zip(tokens, tags)]
            results[i].entities = [
                Entity(
                    text[tokens[s][1] : tokens[e - 1][2]], entity, tokens[s][1], tokens[e - 1][2], round(score, 6), s, e
                )
                for entity, s, e, score in entities
            ]
    return results


@contextlib.contextmanager
def cycle_collection_paused():
    """Python's cycle collector off while a tagger's answers are built: they are tens of thousands of small objects
    without cycles, and the full collections their allocation alone sets off cost a sixth of a large tagging call
    (docs/experiments.md). Reference counting still frees everything; the collector's state is restored after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def classifications(inputs: list[str], lengths: list[int], probabilities: list[list[float]], labels, limit: int):
    """A ``Classification`` per text from its class ``probabilities`` (in ``labels`` order); ``lengths``: its
    tokens, of which the model read the first ``limit``."""
    results = []
    for text, row, length in zip(inputs, probabilities, lengths):
        best = max(range(len(row)), key=row.__getitem__)
        results.append(
            Classification(
                text,
                labels[best],
                round(row[best], 6),
                {label: round(p, 6) for label, p in zip(labels, row)},
                length > limit,
            )
        )
    return results


def translations(inputs: list[str], translate, n_best: int) -> list[Translation]:
    """A ``Translation`` per input from ``translate(sentences) -> [[(translation, score)] * n_best]``; a blank input
    translates to nothing."""
    results = translate([text if text.strip() else "." for text in inputs])
    out = []
    for text, nbest in zip(inputs, results):
        if not text.strip():
            out.append(Translation(text, "", 0.0))
            continue
        hypotheses = [{"translation": t, "score": round(score, 6)} for t, score in nbest] if n_best > 1 else []
        out.append(Translation(text, nbest[0][0], round(nbest[0][1], 6), hypotheses))
    return out


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


# -- what predict takes: checked the same way by both runtimes and the server -------------------------------------

# What a valid value of each option is (the command line's `seqnlp predict` checks its flags with these too).
OPTION_CHECKS = {
    "beam": lambda v: v >= 1,
    "n_best": lambda v: v >= 1,
    "max_chars": lambda v: v >= 0,
    "top_k": lambda v: v >= 0,
    "temperature": lambda v: math.isfinite(v) and v > 0,
    "top_p": lambda v: math.isfinite(v) and 0 < v <= 1,
    "seed": lambda v: 0 <= v < 2**32,
}


def split_options(task, options: dict) -> tuple[dict, dict]:
    """``predict``'s keyword options as (the task's decoding options, config settings); anything else is an error.
    ``task``: a Task or an export's runner, whose config holds the settings there are."""
    allowed = task.predict_options
    names = set(vars(task.config))
    task_options, settings = {}, {}
    for key, value in options.items():
        if key in allowed:
            kind = allowed[key]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                raise ConfigError(f"{key} must be of type {kind.__name__}, not {type(value).__name__}")
            check = OPTION_CHECKS.get(key)
            if check is not None and not check(value):
                raise ConfigError(f"invalid value for {key}: {value!r}")
            task_options[key] = value
        elif key in names:
            settings[key] = value
        else:
            known = ", ".join(sorted(allowed)) or "none"
            raise ConfigError(
                f"unknown option {key!r} for a {task.name} model (its options: {known}; or a setting of its config)"
            )
    return task_options, settings


def check_inputs(task, items: list) -> None:
    """Each input is a string of Unicode text (or, where the task takes them, a list of token strings); anything else
    is a ``ConfigError``."""
    for number, item in enumerate(items):
        if isinstance(item, str):
            check_text(item, f"inputs[{number}]")
            continue
        if task.token_list_inputs and isinstance(item, (list, tuple)) and all(isinstance(t, str) for t in item):
            for position, token in enumerate(item):
                check_text(token, f"inputs[{number}][{position}]")
            continue
        expected = "a string or a list of token strings" if task.token_list_inputs else "a string"
        raise ConfigError(f"inputs[{number}] must be {expected}, not {type(item).__name__}")


def check_text(text: str, name: str) -> None:
    """A lone surrogate (valid in JSON's ``\\ud800`` escapes and in Python strings) is no character: the tokenizers
    and every UTF-8 writer fail on it, so it is the caller's error, named with its position."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ConfigError(
            f"{name} is not Unicode text: a lone surrogate {text[err.start]!r} at character {err.start}"
        ) from None


class LoadedModel:
    """What ``seqnlp.load`` returns, one behaviour for both runtimes: ``seqnlp.api.Model`` (PyTorch) and
    ``seqnlp.serving.runtime.OnnxModel`` differ only in what predicts (``task``: a Task beside its module, or an
    export's runner) and in ``_predict``, ``_with_settings`` and ``_facts``."""

    task: object
    path: object  # the model folder (a pathlib.Path)

    @property
    def task_name(self) -> str:
        return self.task.name

    @property
    def labels(self) -> list[str] | None:
        """Entity types (ner) or classes (sentiment); None for the other tasks."""
        return self.task.label_names()

    def info(self) -> dict:
        import hashlib

        from seqnlp.version import __version__

        config_file = self.path / "config.json"
        checksum = hashlib.sha256(config_file.read_bytes()).hexdigest() if config_file.is_file() else None
        return {"task": self.task.name, "labels": self.labels, "path": str(self.path), "version": __version__,
                "config_sha256": checksum, **self._facts()}  # fmt: skip

    def predict(self, inputs, batch_size: int | None = None, **options):
        """Predictions for a list of inputs (or one prediction for one input), in input order.

        ``inputs``: strings (for ner also lists of tokens). ``options``: the task's decoding options
        (ner: ``pretokenized``; translate: ``beam``, ``n_best``; textgen: ``max_chars``, ``temperature``,
        ``top_k``, ``top_p``, ``seed``) and any setting of the model's config that decoding reads
        (``length_penalty=0.6``). ``batch_size`` bounds the inputs per forward pass.
        """
        single = isinstance(inputs, str)
        items = [inputs] if single else list(inputs)
        check_inputs(self.task, items)
        task_options, settings = split_options(self.task, options)
        if batch_size is not None:
            settings["eval_batch_size"] = batch_size
        predictions = self._predict(self._with_settings(settings) if settings else self.task, items, task_options)
        return predictions[0] if single else predictions

    def _predict(self, task, items: list, options: dict) -> list:
        raise NotImplementedError

    def _with_settings(self, settings: dict):
        """A copy of ``task`` whose config has ``settings`` (decoding settings given to ``predict``)."""
        raise NotImplementedError

    def _facts(self) -> dict:
        """What ``info`` adds for this runtime."""
        return {}
