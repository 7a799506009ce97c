"""Fine-tuning a trained model: new label sets, new words, what carries over and what does not."""

import json

import pytest
import torch

from seqnlp.config import from_dict
from seqnlp.storage.folders import read_model_config
from seqnlp.tasks.base import load_model_dir
from seqnlp.tasks.ner.task import NERConfig, NERTask
from seqnlp.training.finetune import extend, parse_label_map, relabel
from seqnlp.training.run import adapted_model
from seqnlp.vocab import Vocab
from tests.conftest import TINY_NER, run_cli, train_cli

NEW_DATA = [
    ("Maria", "B-person"),
    ("bought", "O"),
    ("an", "O"),
    ("iPhone", "B-product"),
    ("in", "O"),
    ("Oslo", "B-LOC"),
]


@pytest.fixture(scope="module")
def base_ner(tmp_path_factory):
    """A tiny tagger trained on PER / LOC / ORG / MISC."""
    from tests.conftest import write_tiny_conll

    folder = tmp_path_factory.mktemp("base")
    train, dev = write_tiny_conll(folder)
    code, _, err = train_cli(
        "ner",
        train,
        dev,
        folder / "run",
        "--epochs",
        "1",
        *TINY_NER,
    )
    assert code == 0, err
    return folder / "run" / "model"


def new_conll(tmp_path, copies=4):
    path = tmp_path / "new.txt"
    path.write_text(("\n".join(f"{t} {g}" for t, g in NEW_DATA) + "\n\n") * copies, encoding="utf-8")
    return path


def adapt(base, tmp_path, **settings):
    """The new task, adapted model and fine-tuning report of ``base`` on NEW_DATA (as ``seqnlp train --init-from``)."""
    data = new_conll(tmp_path)
    task, examples = task_for(base, train_file=str(data), **settings)
    return task, *adapted_model(task, base, read_model_config(base)["assets"], examples, examples)


def task_for(base, **settings):
    """The fine-tuning task for ``base`` with ``settings``, and the examples of its ``train_file``."""
    from seqnlp.tasks.base import get_task
    from seqnlp.training.run import RUN_SETTINGS

    saved = read_model_config(base)
    cls = get_task(saved["task"])
    values = {k: v for k, v in saved["config"].items() if k not in RUN_SETTINGS}
    task = cls(from_dict(cls.config_class, {**values, **settings}))
    return task, task.read_file(settings["train_file"])


def test_relabel_keeps_known_labels_adds_new_ones_and_maps_on_request():
    labels, source, account = relabel(["LOC", "PER"], ["LOC", "person", "product"], "keep", {"person": "PER"})
    assert labels == ["LOC", "PER", "person", "product"]
    assert source == {"LOC": "LOC", "PER": "PER", "person": "PER", "product": None}
    assert account == "kept 2 (LOC, PER); added 2 (person from PER, product); dropped 0 (-)"
    labels, _, account = relabel(["LOC", "PER"], ["LOC", "product"], "replace", {})
    assert labels == ["LOC", "product"] and account.endswith("dropped 1 (PER)")


def test_a_label_map_naming_an_unknown_label_is_an_error():
    from seqnlp.errors import ConfigError

    with pytest.raises(ConfigError, match="the model has no label 'PERSON'"):
        relabel(["PER"], ["person"], "keep", parse_label_map("person=PERSON"))


def test_extend_keeps_every_old_id_and_appends_new_symbols_most_frequent_first():
    old = Vocab(["<pad>", "<unk>", "a", "b"])
    new, added = extend(old, [["b", "z", "y", "z"]])
    assert new.itos == ["<pad>", "<unk>", "a", "b", "z", "y"] and added == 2


def test_a_new_entity_type_keeps_the_known_tags_weights_bit_identical(base_ner, tmp_path):
    _, old = load_model_dir(base_ner)
    task, model, report = adapt(base_ner, tmp_path, tag_scheme="bioes")
    old_task, _ = load_model_dir(base_ner)
    for tag in ("B-LOC", "S-LOC", "O", "E-PER"):
        new_row, old_row = task.tags.stoi[tag], old_task.tags.stoi[tag]
        assert torch.equal(model.emit.weight[new_row], old.emit.weight[old_row])
        assert torch.equal(
            model.crf.transitions[new_row, task.tags.stoi["O"]], old.crf.transitions[old_row, old_task.tags.stoi["O"]]
        )
    assert torch.equal(
        model.encoder.state_dict()["forward_layers.0.weight_hh_l0"],
        old.encoder.state_dict()["forward_layers.0.weight_hh_l0"],
    )
    fresh = task.tags.stoi["S-product"]
    assert torch.all(model.crf.transitions[fresh] == 0) and torch.all(model.crf.transitions[:, fresh] == 0)
    assert report["entity types"] == "kept 4 (LOC, MISC, ORG, PER); added 2 (person, product); dropped 0 (-)"


def test_a_label_map_starts_a_new_type_from_a_known_ones_weights(base_ner, tmp_path):
    _, old = load_model_dir(base_ner)
    old_task, _ = load_model_dir(base_ner)
    task, model, _ = adapt(base_ner, tmp_path, label_map="person=PER")
    assert torch.equal(model.emit.weight[task.tags.stoi["B-person"]], old.emit.weight[old_task.tags.stoi["B-PER"]])


def test_reset_head_starts_the_output_layer_and_crf_afresh(base_ner, tmp_path):
    _, old = load_model_dir(base_ner)
    old_task, _ = load_model_dir(base_ner)
    task, model, report = adapt(base_ner, tmp_path, reset_head=True)
    assert not torch.equal(model.emit.weight[task.tags.stoi["B-LOC"]], old.emit.weight[old_task.tags.stoi["B-LOC"]])
    assert torch.all(model.crf.transitions == 0)
    assert torch.equal(model.embedding.words.weight[: len(old_task.words)], old.embedding.words.weight)
    assert report["output layer"] == "reset (--reset-head)"


def test_vocabulary_extension_keeps_the_trained_rows_and_adds_new_words(base_ner, tmp_path):
    old_task, old = load_model_dir(base_ner)
    task, model, report = adapt(base_ner, tmp_path)
    assert "iphone" in task.words.stoi and "iphone" not in old_task.words.stoi
    assert torch.equal(model.embedding.words.weight[: len(old_task.words)], old.embedding.words.weight)
    assert f"{len(task.words) - len(old_task.words)} added from the new training data" in report["words"]
    task, model, _ = adapt(base_ner, tmp_path, extend_vocab=False)
    assert len(task.words) == len(old_task.words)


def test_new_words_start_as_the_unknown_word_unless_fresh_rows_are_asked_for(base_ner, tmp_path):
    old_task, old = load_model_dir(base_ner)
    unknown = old.embedding.words.weight[old_task.words.unk_id]
    task, model, report = adapt(base_ner, tmp_path)
    added = model.embedding.words.weight[len(old_task.words) :]
    assert len(added) > 0 and torch.equal(added, unknown.expand_as(added))
    assert "unknown symbol" in report["words"]
    task, model, report = adapt(base_ner, tmp_path, new_rows_from="fresh")
    added = model.embedding.words.weight[len(old_task.words) :]
    assert not any(torch.equal(row, unknown) for row in added) and "fresh rows" in report["words"]


def test_fine_tuning_on_new_types_trains_reports_and_loads(base_ner, tmp_path):
    data = new_conll(tmp_path)
    out = tmp_path / "out"
    code, stdout, err = run_cli(
        "train",
        "ner",
        "--init-from",
        base_ner,
        "--train-file",
        data,
        "--dev-file",
        data,
        "--output-dir",
        out,
        "--epochs",
        "1",
        "--quiet",
        "--freeze",
        "encoder",
    )
    assert code == 0, err
    assert "fine-tuning: entity types: kept 4 (LOC, MISC, ORG, PER); added 2 (person, product)" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert (
        metrics["fine_tuning"]["base_model"] == str(base_ner)
        and len(metrics["fine_tuning"]["base_config_sha256"]) == 64
    )
    assert {"dev_before", "dev_after"} <= set(metrics["fine_tuning"])
    assert (
        "fine-tuning: dev before" in (out / "report.md").read_text()
        and "trainable parameters" in (out / "report.md").read_text()
    )
    _, model = load_model_dir(out / "model")
    _, base = load_model_dir(base_ner)
    assert torch.equal(
        model.encoder.state_dict()["forward_layers.0.weight_hh_l0"],
        base.encoder.state_dict()["forward_layers.0.weight_hh_l0"],
    )  # frozen


def test_a_sentiment_model_fine_tunes_to_more_classes(tmp_path):
    two = tmp_path / "two.tsv"
    two.write_text("sentence\tlabel\n" + "good film\t1\nbad film\t0\n" * 10)
    five = tmp_path / "five.tsv"
    five.write_text("sentence\tlabel\n" + "".join(f"film number {i}\t{i}\n" for i in range(5)) * 4)
    tiny = ["--word-dim", "8", "--hidden", "8", "--epochs", "1", "--quiet"]
    assert run_cli("train", "sentiment", "--train-file", two, "--output-dir", tmp_path / "base", *tiny)[0] == 0
    code, stdout, err = run_cli(
        "train",
        "sentiment",
        "--init-from",
        tmp_path / "base" / "model",
        "--train-file",
        five,
        "--dev-file",
        five,
        "--output-dir",
        tmp_path / "out",
        "--epochs",
        "1",
        "--quiet",
    )
    assert code == 0, err
    assert "fine-tuning: classes: kept 2 (0, 1); added 3 (2, 3, 4)" in stdout
    task, _ = load_model_dir(tmp_path / "out" / "model")
    assert task.labels.itos == ["0", "1", "2", "3", "4"]


def test_a_sentiment_fine_tune_starts_at_a_quarter_of_the_models_rate_with_more_word_dropout(tmp_path):
    data = tmp_path / "two.tsv"
    data.write_text("sentence\tlabel\n" + "good film\t1\nbad film\t0\n" * 10)
    tiny = ["--word-dim", "8", "--hidden", "8", "--epochs", "1", "--quiet"]
    code, _, err = run_cli(
        "train", "sentiment", "--train-file", data, "--output-dir", tmp_path / "base", "--lr", "0.004", *tiny
    )
    assert code == 0, err
    fine_tune = ["train", "sentiment", "--init-from", tmp_path / "base" / "model", "--train-file", data, *tiny]
    code, stdout, err = run_cli(*fine_tune, "--output-dir", tmp_path / "default")
    assert code == 0, err
    assert "fine-tuning starts from lr 0.001, word_dropout 0.3 instead of the model's settings" in stdout
    assert run_cli(*fine_tune, "--output-dir", tmp_path / "given", "--lr", "0.003", "--word-dropout", "0.1")[0] == 0
    settings = {run: read_model_config(tmp_path / run / "model")["config"] for run in ("default", "given")}
    assert (settings["default"]["lr"], settings["default"]["word_dropout"]) == (0.001, 0.3)
    assert (settings["given"]["lr"], settings["given"]["word_dropout"]) == (0.003, 0.1)


def test_resume_with_another_starting_model_is_refused_and_the_run_is_untouched(base_ner, tmp_path):
    sentiment_data = tmp_path / "two.tsv"
    sentiment_data.write_text("sentence\tlabel\n" + "good film\t1\nbad film\t0\n" * 10)
    tiny = ["--word-dim", "8", "--hidden", "8", "--epochs", "1", "--quiet"]
    assert (
        run_cli("train", "sentiment", "--train-file", sentiment_data, "--output-dir", tmp_path / "other", *tiny)[0] == 0
    )
    data = new_conll(tmp_path)
    out = tmp_path / "out"
    fine_tune = ["train", "ner", "--train-file", data, "--dev-file", data, "--output-dir", out, "--quiet"]
    assert run_cli(*fine_tune, "--init-from", base_ner, "--epochs", "1")[0] == 0
    before = {p.name: p.read_bytes() for p in (out / "model").iterdir() if p.is_file()}
    for other in (tmp_path / "other" / "model", tmp_path / "nowhere"):
        code, _, err = run_cli(*fine_tune, "--init-from", other, "--resume", "--epochs", "2")
        assert code == 2 and err.count("\n") == 1
        assert err.startswith(f"error: --init-from {other} contradicts --resume: the run in {out} started from ")
    assert {p.name: p.read_bytes() for p in (out / "model").iterdir() if p.is_file()} == before
    # the same starting model, as the first command named it, resumes
    code, _, err = run_cli(*fine_tune, "--init-from", base_ner, "--resume", "--epochs", "2")
    assert code == 0, err
    assert json.loads((out / "metrics.json").read_text())["train"]["epochs"] == 2


def test_resume_with_init_from_is_refused_for_a_run_started_from_scratch(tmp_path):
    data = tmp_path / "two.tsv"
    data.write_text("sentence\tlabel\n" + "good film\t1\nbad film\t0\n" * 10)
    tiny = ["--word-dim", "8", "--hidden", "8", "--epochs", "1", "--quiet"]
    assert run_cli("train", "sentiment", "--train-file", data, "--output-dir", tmp_path / "base", *tiny)[0] == 0
    code, _, err = run_cli(
        "train", "sentiment", "--train-file", data, "--output-dir", tmp_path / "base", *tiny,
        "--init-from", tmp_path / "base" / "model", "--resume",
    )  # fmt: skip
    assert code == 2 and "started from scratch and resumes from its checkpoint" in err


def test_a_conll_line_holding_a_single_tab_ends_a_sentence(tmp_path):
    from seqnlp.data.conll import read_conll

    path = tmp_path / "wnut.conll"
    path.write_text("@paul\tO\nsaid\tO\n\t\nNew\tB-location\nYork\tI-location\n")
    sentences = read_conll(path)
    assert [s.tokens for s in sentences] == [["@paul", "said"], ["New", "York"]]


def test_a_folder_of_data_files_named_by_split_serves_each_split(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for split in ("train", "validation", "test"):
        (folder / f"{split}.jsonl").write_text(json.dumps({"tokens": [split], "ner_tags": ["O"]}) + "\n")
    task = NERTask(from_dict(NERConfig, {"dataset": str(folder)}))
    assert [task.read(s)[0].tokens for s in ("train", "dev", "test")] == [["train"], ["validation"], ["test"]]


def test_the_character_vocabulary_holds_characters(tmp_path):
    from seqnlp.data.conll import TaggedSentence

    task = NERTask(from_dict(NERConfig, {}))
    task.build_vocabularies([TaggedSentence(["Oslo", "is"], ["S-LOC", "O"], "t:1")])
    assert sorted(task.chars.itos[2:]) == ["O", "i", "l", "o", "s"]


def test_fine_tuning_settings_of_the_base_run_are_not_inherited(base_ner, tmp_path):
    from seqnlp.training.run import RUN_SETTINGS

    assert {"labels", "label_map", "reset_head", "extend_vocab", "freeze", "lr_pretrained"} <= RUN_SETTINGS


@pytest.mark.parametrize(
    "embedding, setting, moved",
    [
        ("linear", {"lr_pretrained": 0.01}, [0.01, 0.1]),  # the body (embeddings, encoder) against the output layer
        ("words", {"word_embedding_lr": 0.01}, [0.01, 0.1, 0.1]),  # the word table; the casing table and output: --lr
    ],
    ids=["lr_pretrained moves the body", "word_embedding_lr moves the word table alone"],
)
def test_a_part_of_the_model_learns_at_its_own_rate(embedding, setting, moved):
    from seqnlp.config import RunConfig
    from seqnlp.nn.embedding import WordCharEmbedding
    from seqnlp.training.trainer import build_optimizer

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            if embedding == "linear":
                self.embedding = torch.nn.Linear(2, 2, bias=False)
            else:
                self.embedding = WordCharEmbedding(4, 2, num_casings=3, casing_dim=2)
            self.out = torch.nn.Linear(2, 2, bias=False)

    model = Model()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = build_optimizer(model, RunConfig(optimizer="sgd", momentum=0.0, lr=0.1, **setting))
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    assert [float((b - p.detach()).mean()) for b, p in zip(before, model.parameters())] == pytest.approx(moved)


def test_a_dataset_dict_run_says_which_split_served_as_what(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = {"text": ["good film", "bad film"] * 10, "label": [1, 0] * 10}
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict(rows), "validation": datasets.Dataset.from_dict(rows)}
    ).save_to_disk(str(tmp_path / "dd"))
    code, stdout, err = run_cli(
        "train",
        "sentiment",
        "--dataset",
        tmp_path / "dd",
        "--output-dir",
        tmp_path / "out",
        "--epochs",
        "1",
        "--word-dim",
        "8",
        "--hidden",
        "8",
        "--quiet",
    )
    assert code == 0, err
    assert f"{tmp_path / 'dd'} splits: train: train, dev: validation, test: none" in stdout


def test_vocabularies_record_how_many_entries_each_source_added(base_ner, tmp_path):
    old_task, _ = load_model_dir(base_ner)
    task, _, _ = adapt(base_ner, tmp_path)
    base_source = old_task.config.train_file
    added = len(task.words) - len(old_task.words)
    assert task.words.sources == [
        {"source": base_source, "entries": len(old_task.words)},
        {"source": str(tmp_path / "new.txt"), "entries": added},
    ]
    assert Vocab.from_dict(task.words.to_dict()).sources == task.words.sources  # saved with the model


def test_a_vocabulary_whose_sources_do_not_add_up_is_refused():
    from seqnlp.errors import DataError

    with pytest.raises(DataError, match="entries add up to its tokens"):
        Vocab.from_dict(
            {
                "tokens": ["<pad>", "<unk>", "a"],
                "unk": "<unk>",
                "pad": "<pad>",
                "sources": [{"source": "train.txt", "entries": 2}],
            }
        )


def test_new_vocab_is_refused_for_a_model_of_words(base_ner, tmp_path):
    code, _, err = run_cli(
        "train",
        "ner",
        "--init-from",
        base_ner,
        "--train-file",
        new_conll(tmp_path),
        "--new-vocab",
        "--output-dir",
        tmp_path / "out",
        "--epochs",
        "1",
        "--quiet",
    )
    assert code == 2 and "--new-vocab re-trains a SentencePiece model; this model reads words" in err


TINY_TRANSLATE = [
    "--embed-dim",
    "16",
    "--hidden",
    "16",
    "--decoder-hidden",
    "16",
    "--vocab-size",
    "60",
    "--batch-size",
    "8",
    "--beam",
    "2",
    "--quiet",
]


def write_parallel(folder, name, pairs):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.de").write_text("".join(src + "\n" for src, _ in pairs), encoding="utf-8")
    (folder / f"{name}.en").write_text("".join(tgt + "\n" for _, tgt in pairs), encoding="utf-8")
    return folder / name


@pytest.fixture(scope="module")
def base_translate(tmp_path_factory):
    folder = tmp_path_factory.mktemp("translate")
    pairs = [
        ("Ein Hund läuft.", "A dog runs."),
        ("Eine Frau liest.", "A woman reads."),
        ("Zwei Männer laufen.", "Two men run."),
    ] * 6
    train = write_parallel(folder, "train", pairs)
    code, _, err = run_cli(
        "train", "translate", "--train-file", train, "--output-dir", folder / "run", "--epochs", "1", *TINY_TRANSLATE
    )
    assert code == 0, err
    return folder / "run" / "model"


NEW_PAIRS = [("Ein Vogel singt laut.", "A bird sings loudly."), ("Katzen schlafen.", "Cats sleep.")] * 6


def test_translation_fine_tuning_keeps_the_sentencepiece_model_and_every_weight(base_translate, tmp_path):
    old_task, old = load_model_dir(base_translate)
    task, examples = task_for(base_translate, train_file=str(write_parallel(tmp_path, "new", NEW_PAIRS)))
    model, report = adapted_model(task, base_translate, read_model_config(base_translate)["assets"], examples, examples)
    assert task.src_sp.model_proto == old_task.src_sp.model_proto
    assert all(torch.equal(tensor, old.state_dict()[name]) for name, tensor in model.state_dict().items())
    assert set(old_task.output_ids) < set(task.output_ids)  # the new targets' subwords are scored too
    assert report["subwords"].startswith("the model's SentencePiece model kept (")


def test_new_vocab_trains_a_sentencepiece_model_whose_known_pieces_keep_their_rows(base_translate, tmp_path):
    old_task, old = load_model_dir(base_translate)
    task, examples = task_for(
        base_translate, train_file=str(write_parallel(tmp_path, "new", NEW_PAIRS)), new_vocab=True
    )
    model, report = adapted_model(task, base_translate, read_model_config(base_translate)["assets"], examples, examples)
    new_pieces, old_pieces = task.src_sp.pieces, old_task.src_sp.pieces
    shared = [p for p in new_pieces.itos if p in old_pieces.stoi]
    assert task.src_sp.model_proto != old_task.src_sp.model_proto and {"A", "en", "▁l"} <= set(shared)
    for piece in shared:
        assert torch.equal(model.src_embed.weight[new_pieces.stoi[piece]], old.src_embed.weight[old_pieces.stoi[piece]])
    assert torch.equal(
        model.encoder.state_dict()["forward_layers.0.weight_hh_l0"],
        old.encoder.state_dict()["forward_layers.0.weight_hh_l0"],
    )
    assert report["subwords"] == (
        f"a new SentencePiece model of {len(new_pieces)} pieces (--new-vocab): {len(shared)} start "
        f"from the model's embedding rows, {len(new_pieces) - len(shared)} fresh"
    )


def sentiment_rows():
    return [
        ("a good film", "positive"),
        ("a bad film", "negative"),
        ("good acting", "positive"),
        ("dull and bad", "negative"),
    ] * 5


def test_a_dataset_dict_and_the_same_plain_files_train_the_same_model(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = sentiment_rows()
    for split in ("train", "dev"):
        (tmp_path / f"{split}.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    names = ["negative", "positive"]
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    split = datasets.Dataset.from_dict(
        {"text": [t for t, _ in rows], "label": [names.index(y) for _, y in rows]}, features=features
    )
    datasets.DatasetDict({"train": split, "validation": split}).save_to_disk(str(tmp_path / "hf"))
    tiny = ["--word-dim", "8", "--hidden", "8", "--epochs", "2", "--quiet"]
    assert run_cli("train", "sentiment", "--dataset", tmp_path / "hf", "--output-dir", tmp_path / "a", *tiny)[0] == 0
    assert (
        train_cli(
            "sentiment",
            tmp_path / "train.tsv",
            tmp_path / "dev.tsv",
            tmp_path / "b",
            *tiny,
        )[0]
        == 0
    )
    from_hf, from_files = (json.loads((tmp_path / run / "metrics.json").read_text())["dev"] for run in ("a", "b"))
    assert from_hf == from_files
    _, a = load_model_dir(tmp_path / "a" / "model")
    _, b = load_model_dir(tmp_path / "b" / "model")
    assert all(torch.equal(t, b.state_dict()[name]) for name, t in a.state_dict().items())
