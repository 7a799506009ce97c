"""seqnlp's side of the peer benchmarks: the task's model at the peer's sizes, trained step by step as the Trainer
trains it (``benchmarks/common.py``), inference through ``Task.predict`` as ``seqnlp.load(...).predict`` runs it and
translation through ``TranslateTask.translate`` as ``seqnlp evaluate`` runs it."""

from __future__ import annotations

from common import train_step_of  # first: it puts the repository on the import path

# isort: split

from operator import attrgetter

import torch
from protocol import serve

from seqnlp.config import from_dict
from seqnlp.tasks.ner.task import NERConfig, NERTask
from seqnlp.tasks.sentiment.task import SentimentConfig, SentimentTask
from seqnlp.tasks.translate.task import TranslateConfig, TranslateTask
from seqnlp.training.trainer import build_optimizer


def train_steps_of(model, config, batches):
    """A window of training steps cycling over ``batches``: the subwords or tokens it trained on."""
    step = train_step_of(model, build_optimizer(model, config), config.clip_norm)
    position = [0]

    def train_steps(steps: int) -> int:
        tokens = 0
        for _ in range(steps):
            batch = batches[position[0] % len(batches)]
            position[0] += 1
            step(batch)
            tokens += int(batch["num_tokens"])
        return tokens

    return train_steps


def translator(settings: dict) -> dict:
    """The translator on the subwords ``against_onmt.py`` trained (``load_assets``), so both sides read the same
    segmentation; ``translate`` writes one detokenized hypothesis a line to ``HYPOTHESES-beamN.txt`` and counts the
    sentences."""
    task = TranslateTask(from_dict(TranslateConfig, settings["config"]))
    task.load_assets(settings["work"], settings["assets"])
    train = task.read_file(settings["train"])
    sources = [pair.src for pair in task.read_file(settings["infer"])]
    model = task.build_model()
    train_steps = train_steps_of(model, task.config, task.batches(task.prepare(train), shuffle=True))

    def translate(beam: int) -> int:
        hypotheses = [nbest[0][0] for nbest in task.translate(model, sources, beam)]
        with open(f"{settings['hypotheses']}-beam{beam}.txt", "w", encoding="utf-8") as out:
            out.writelines(f"{hypothesis}\n" for hypothesis in hypotheses)
        return len(sources)

    train_steps(settings["warmup_steps"])
    return {"train": train_steps, "translate": translate}


def setup(settings: dict) -> dict:
    torch.set_num_threads(settings["threads"])
    torch.manual_seed(0)
    if settings["task"] == "translator":
        return translator(settings)
    if settings["task"] == "tagger":
        task = NERTask(from_dict(NERConfig, settings["config"]))
        options, as_input = {"pretokenized": True}, attrgetter("tokens")
    else:
        task = SentimentTask(from_dict(SentimentConfig, settings["config"]))
        options, as_input = {}, attrgetter("text")
    # seqnlp's own readers (the tagger's converts IOB2 to the BIOES it predicts); the peer reads the same files
    train = task.read_file(settings["train"])[: settings["sentences"]]
    inputs = [as_input(example) for example in task.read_file(settings["infer"])]
    task.build_vocabularies(train)
    model = task.build_model()
    train_steps = train_steps_of(model, task.config, task.batches(task.prepare(train), shuffle=True))
    tokens_to_predict = sum(len(x) if isinstance(x, list) else len(x.split()) for x in inputs)

    def predict() -> int:
        model.eval()
        task.predict(model, inputs, options)
        return tokens_to_predict

    train_steps(settings["warmup_steps"])
    predict()
    return {"train": train_steps, "infer": predict}


if __name__ == "__main__":
    serve(setup)
