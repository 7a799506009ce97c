"""Text generation: a character-level language model on plain text, scored in nats/char, bits/char and perplexity."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from seqnlp.config import MAX_WIDTH, ConfigError, RunConfig, setting
from seqnlp.data.hf import require_columns
from seqnlp.data.text import read_text
from seqnlp.errors import DataError
from seqnlp.evaluation.evidence import attach_intervals
from seqnlp.evaluation.metrics import language_model_scores, language_model_statistics, loss_by_character_class
from seqnlp.predictions import GENERATION_DEFAULTS, GENERATION_OPTIONS, Generation
from seqnlp.tasks.base import Task, register
from seqnlp.tasks.textgen import report
from seqnlp.tasks.textgen.model import CharLM
from seqnlp.vocab import PAD, UNK, Vocab

CHUNK_CHARS = 256  # evaluation segments; each stream's part of one is a unit of the bootstrap interval


@dataclass(frozen=True)
class Document:
    text: str
    source: str = ""


@dataclass
class TextgenConfig(RunConfig):
    text_field: str = setting("text", "HF datasets: the text column (rows are joined with newlines)")
    seq_len: int = setting(128, "truncated-BPTT segment length", low=2, high=1_000_000)
    embed_dim: int = setting(64, "character embedding size", low=1, high=MAX_WIDTH)
    eval_streams: int = setting(16, "parallel streams that score the dev text", low=1, high=100_000)
    sample_prompts: str = setting("ROMEO:|First Citizen:|The ", "report samples' prompts, separated by |")
    sample_chars: int = setting(200, "characters generated per report sample", low=0, high=1_000_000)
    bidirectional: bool = False
    hidden: int = 384
    layers: int = 2
    dropout: float = 0.2
    batch_size: int = 64  # parallel streams
    epochs: int = 15
    lr: float = 3e-3
    clip_norm: float = 1.0
    patience: int = 0
    # bf16 where the device has bf16 arithmetic: in the recipe's 20 minutes it ran twice the epochs to a lower loss
    # (docs/experiments.md, "Mixed precision"); fp32 elsewhere.
    precision: str = "auto"

    def validate(self) -> None:
        super().validate()
        if self.bidirectional:
            raise ConfigError("a language model reads left to right: bidirectional must be false")


@register
class TextgenTask(Task):
    name = "textgen"
    config_class = TextgenConfig
    bf16_pays = True  # docs/experiments.md, "Mixed precision": faster in bf16 on AVX512-BF16 and AMX
    metric = "loss"
    predict_options = {**GENERATION_OPTIONS, "generator": torch.Generator}
    # Every input's characters come from one random stream: a served request shares it with no other, so
    # its continuation depends on its seed alone.
    shares_batches = False
    higher_is_better = False
    sample_files = ("train.txt", "val.txt", "test.txt")
    pipeline_tag = "text-generation"
    usage_input = "ROMEO:"

    def description(self):
        return "a character-level language model"

    # -- data --------------------------------------------------------------------------
    def read_file(self, path):
        text = read_text(path)
        if len(text) < 2:
            raise DataError("the text is empty (a language model needs at least two characters)", path)
        return [Document(text, path)]

    def read_hf(self, dataset, source):
        require_columns(dataset, [self.config.text_field], source)
        text = "\n".join(str(t) for t in dataset[self.config.text_field] if t)
        if len(text) < 2:
            raise DataError(f"{source}: the text column {self.config.text_field!r} is empty")
        return [Document(text, source)]

    def hold_out(self, train):
        """The last 10% of the text (whole documents would leave nothing to train on when there is one)."""
        text = "\n".join(d.text for d in train)
        cut = len(text) - max(2, len(text) // 10)
        if cut < 2:
            raise DataError("the training text is too short to hold out a dev part; give --dev-file")
        source = train[0].source if len(train) == 1 else "training text"
        return (
            [Document(text[:cut], source)],
            [Document(text[cut:], source)],
            f"the last {len(text) - cut} of {len(text)} training characters (10%) held out",
        )

    def num_tokens(self, example):
        return len(example.text)

    # -- vocabulary and model ------------------------------------------------------------
    def build_vocabularies(self, train):
        self.chars = Vocab.build((d.text for d in train), specials=(PAD, UNK), source=self.data_source())

    def adapt(self, train):
        """New characters get fresh embedding and output rows; every known one keeps its weights."""
        from seqnlp.training import finetune

        if not self.config.extend_vocab:
            return finetune.Adaptation()
        old = self.chars
        self.chars, added = finetune.extend(old, (d.text for d in train), source=self.data_source())
        rows, start = finetune.extension_map(self.chars, old, self.config.new_rows_from)
        return finetune.Adaptation(
            maps={"chars": rows},
            notes={"characters": f"{len(old)} from the model, {added} added from the new training text{start}"},
        )

    def weight_axes(self):
        return {"embed.weight": ("chars", (0,)), "out.weight": ("chars", (0,)), "out.bias": ("chars", (0,))}

    def build_model(self):
        config = self.config
        return CharLM(config, len(self.chars))

    def save_assets(self, directory):
        return {"chars": self.chars.to_dict()}

    def load_assets(self, directory, assets):
        self.chars = Vocab.from_dict(assets["chars"])

    def encode(self, text: str) -> torch.Tensor:
        return torch.tensor(self.chars.encode(text), dtype=torch.long)

    # -- batches -----------------------------------------------------------------------
    def prepare(self, examples):
        return self.encode("\n".join(d.text for d in examples))

    def batches(self, ids, shuffle, epoch=0):
        """Contiguous streams, one per batch row, cut into ``seq_len`` segments that follow each other.

        The start offset moves with the epoch so segment borders fall in new places.
        """
        config = self.config
        offset = random.Random(config.seed * 1_000_003 + epoch).randrange(config.seq_len) if shuffle else 0
        per_stream = (len(ids) - offset - 1) // config.batch_size
        if per_stream < 2:
            raise DataError(f"the training text is too short for {config.batch_size} streams; lower --batch-size")
        span = per_stream * config.batch_size
        inputs = ids[offset : offset + span].view(config.batch_size, per_stream)
        targets = ids[offset + 1 : offset + 1 + span].view(config.batch_size, per_stream)
        return [
            {
                "inputs": inputs[:, i : i + config.seq_len],
                "targets": targets[:, i : i + config.seq_len],
                "reset": i == 0,
                "num_tokens": inputs[:, i : i + config.seq_len].numel(),
            }
            for i in range(0, per_stream, config.seq_len)
        ]

    def loss_units(self, batch):
        return float(batch["targets"].numel())  # the loss is a mean over predicted characters

    # -- evaluation and prediction -----------------------------------------------------
    def evaluate(self, model, examples, selection=False):
        model.eval()
        device = next(model.parameters()).device
        ids = self.prepare(examples)
        streams = max(1, min(self.config.eval_streams, len(ids) // 2))
        per_stream = len(ids) // streams
        chunks = None if selection else []
        by_target = None if selection else torch.zeros(2, len(self.chars), dtype=torch.float64)
        total, count = model.total_nll(
            ids[: streams * per_stream].view(streams, per_stream).to(device), CHUNK_CHARS, chunks, by_target
        )
        scores = language_model_scores(total, count)
        scores["unknown_char_rate"] = float((ids == self.chars.unk_id).float().mean())
        if not selection:
            prompts = [p for p in self.config.sample_prompts.split("|") if p]
            scores["_samples"] = dict(zip(prompts, self.generate(model, prompts, self.config.sample_chars, seed=0)))
            attach_intervals(scores, language_model_statistics(chunks, CHUNK_CHARS), self.config.bootstrap)
            scores["loss_by_character_class"] = loss_by_character_class(self.chars.itos, *by_target.tolist())
        return scores

    def generate(
        self,
        model,
        prompts: list[str],
        length: int,
        temperature: float = 0.8,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | torch.Generator = 0,
    ) -> list[str]:
        """``seed``: a seed, or a generator whose random stream goes on from call to call."""
        model.eval()
        generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
        encoded = [self.chars.encode(p) or [self.chars.unk_id] for p in prompts]
        ids = model.generate(encoded, length, temperature, top_k, top_p, generator)
        return ["".join(self.chars.decode(row)) for row in ids]

    def input_from_line(self, line):
        """A prompt line may hold newlines written as ``\\n``."""
        return line.replace("\\n", "\n")

    def predict(self, model, inputs, options):
        """A continuation of each prompt (``max_chars``, ``temperature``, ``top_k``, ``top_p``, ``seed`` or
        ``generator``)."""
        settings = {name: options.get(name, default) for name, default in GENERATION_DEFAULTS.items()}
        seed = options.get("generator", options.get("seed", 0))
        texts = self.generate(model, list(inputs), settings.pop("max_chars"), **settings, seed=seed)
        return [Generation(prompt, text) for prompt, text in zip(inputs, texts)]

    report_sections = staticmethod(report.report_sections)
