"""Flair's side of ``against_flair.py`` (runs in the Flair environment): a SequenceTagger or TextClassifier built from
trainable embeddings only (no downloads), trained as Flair's ModelTrainer trains it, step by step."""

from __future__ import annotations

import random
from collections import Counter

import torch
from protocol import conll_sentences, serve, tsv_texts


def labelled_sentence(tokens: list[str], tags: list[str]):
    """A Flair Sentence with the IOB2 tags' entity spans as its ``ner`` labels."""
    from flair.data import Sentence

    sentence = Sentence(tokens)
    start = kind = None
    for i, tag in enumerate([*tags, "O"]):
        if start is not None and (tag == "O" or tag.startswith("B-") or tag[2:] != kind):
            sentence[start:i].add_label("ner", kind)
            start = None
        if tag != "O" and start is None:
            start, kind = i, tag[2:]
    return sentence


def dictionary(items, add_unk: bool = True):
    from flair.data import Dictionary

    d = Dictionary(add_unk=add_unk)
    for item in items:
        d.add_item(item)
    return d


def setup(settings: dict) -> dict:
    import flair
    from flair.data import Sentence
    from flair.embeddings import CharacterEmbeddings, DocumentRNNEmbeddings, OneHotEmbeddings, StackedEmbeddings
    from flair.models import SequenceTagger, TextClassifier
    from flair.training_utils import store_embeddings

    torch.set_num_threads(settings["threads"])
    torch.manual_seed(0)
    flair.device = torch.device("cpu")
    if settings["task"] == "tagger":
        train = [labelled_sentence(t, g) for t, g in conll_sentences(settings["train"], settings["sentences"])]
        infer = [Sentence(t) for t, _ in conll_sentences(settings["infer"])]
        words = Counter(token.text for s in train for token in s)
        embeddings = StackedEmbeddings(
            [
                OneHotEmbeddings(dictionary(words), embedding_length=settings["word_dim"]),
                CharacterEmbeddings(
                    dictionary(set("".join(words))),
                    char_embedding_dim=settings["char_dim"],
                    hidden_size_char=settings["char_out"] // 2,
                ),
            ]
        )
        types = dictionary(sorted({label.value for s in train for label in s.get_labels("ner")}), add_unk=False)
        types.span_labels = True  # as Corpus.make_label_dictionary marks entity types: BIOES tags are made of them
        model = SequenceTagger(
            hidden_size=settings["hidden"],
            embeddings=embeddings,
            tag_dictionary=types,
            tag_type="ner",
            use_crf=True,
            reproject_embeddings=False,
        )
    else:
        texts = tsv_texts(settings["train"], settings["sentences"])
        train = []
        for text, label in texts:
            sentence = Sentence(text.split())
            sentence.add_label("sentiment", label)
            train.append(sentence)
        infer = [Sentence(text.split()) for text, _ in tsv_texts(settings["infer"])]
        words = Counter(token.text for s in train for token in s)
        document = DocumentRNNEmbeddings(
            [OneHotEmbeddings(dictionary(words), embedding_length=settings["word_dim"])],
            hidden_size=settings["hidden"],
            bidirectional=True,
            rnn_type="LSTM",
            reproject_words=False,
            dropout=settings["dropout"],
        )
        labels = dictionary(sorted({s.get_label("sentiment").value for s in train}), add_unk=False)
        model = TextClassifier(document, label_type="sentiment", label_dictionary=labels)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # what Flair's ModelTrainer uses by default
    random.Random(0).shuffle(train)
    batch_size = settings["batch_size"]
    batches = [train[i : i + batch_size] for i in range(0, len(train), batch_size)]
    position = [0]

    def train_steps(steps: int) -> int:
        model.train()
        tokens = 0
        for _ in range(steps):
            batch = batches[position[0] % len(batches)]
            position[0] += 1
            loss, _count = model.forward_loss(batch)
            model.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            store_embeddings(batch, "none")
            tokens += sum(len(s) for s in batch)
        return tokens

    def predict() -> int:
        model.predict(infer, mini_batch_size=settings["infer_batch_size"], label_name="predicted")
        return sum(len(s) for s in infer)

    train_steps(settings["warmup_steps"])
    predict()
    return {"train": train_steps, "infer": predict}


if __name__ == "__main__":
    serve(setup)
