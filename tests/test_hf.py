import json

import pytest

from seqnlp.config import from_dict
from seqnlp.errors import DataError
from seqnlp.tasks.ner.task import NERConfig, NERTask

datasets = pytest.importorskip("datasets")


def conll_like_dataset():
    features = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])),
        }
    )
    rows = {"tokens": [["Anna", "Berg", "lives", "in", "Oslo"], ["Hi", "Tom"]], "ner_tags": [[1, 2, 0, 0, 3], [0, 1]]}
    return datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(rows, features=features),
            "validation": datasets.Dataset.from_dict(rows, features=features),
        }
    )


def task_for(**settings):
    return NERTask(from_dict(NERConfig, {"tag_scheme": "iob2", **settings}))


def test_save_to_disk_folder_with_classlabel_names(tmp_path):
    conll_like_dataset().save_to_disk(str(tmp_path / "ds"))
    sentences = task_for(dataset=str(tmp_path / "ds")).read("train")
    assert sentences[0].tags == ["B-PER", "I-PER", "O", "O", "B-LOC"]
    assert sentences[1].tokens == ["Hi", "Tom"]


def test_jsonl_data_file_with_string_tags_and_custom_columns(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"words": ["Paris", "is", "big"], "labels": ["B-LOC", "O", "O"]}\n', encoding="utf-8")
    sentences = task_for(dataset=str(path), tokens_field="words", tags_field="labels").read("train")
    assert sentences[0].tags == ["B-LOC", "O", "O"]


def test_missing_column_names_the_available_ones(tmp_path):
    conll_like_dataset().save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(DataError, match="no column 'labels' \\(columns: tokens, ner_tags\\)"):
        task_for(dataset=str(tmp_path / "ds"), tags_field="labels").read("train")


def test_missing_test_split_is_none_and_unknown_split_for_train_is_an_error(tmp_path):
    conll_like_dataset().save_to_disk(str(tmp_path / "ds"))
    task = task_for(dataset=str(tmp_path / "ds"))
    assert task.read("test") is None
    with pytest.raises(DataError, match="no split 'nope'"):
        task_for(dataset=str(tmp_path / "ds"), train_split="nope").read("train")


def test_unreachable_hub_name_is_a_clear_error():
    with pytest.raises(DataError, match="could not load dataset"):
        task_for(dataset="no-such-user/no-such-dataset-xyz").read("train")


def hub_cache_entry(cache, repo_id: str, splits: dict) -> None:
    """What ``load_dataset(repo_id)`` leaves in the datasets cache when it downloads a hub dataset of JSON Lines files:
    ``NAMESPACE___NAME/default/0.0.0/REVISION/`` with ``dataset_info.json`` and one Arrow file per split."""
    import shutil

    from datasets.packaged_modules.json.json import Json

    namespace, name = repo_id.split("/")
    cache.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, rows in splits.items():
        files[split] = str(cache.parent / f"{split}.jsonl")
        with open(files[split], "w", encoding="utf-8") as out:
            out.writelines(json.dumps(row) + "\n" for row in rows)
    staging = cache.parent / "staging"
    Json(
        cache_dir=str(staging), dataset_name=name, hash="0123456789abcdef0123456789abcdef01234567", data_files=files
    ).download_and_prepare()
    # The builder names its folder after the config and its data files; a hub download's folder is "default".
    (built,) = (staging / name).iterdir()
    built.rename(built.parent / "default")
    shutil.move(str(staging / name), str(cache / f"{namespace}___{name}"))


def test_a_hub_name_loads_offline_from_the_datasets_cache(tmp_path, monkeypatch):
    rows = [{"tokens": ["Anna", "lives", "in", "Oslo"], "ner_tags": ["B-PER", "O", "O", "B-LOC"]}]
    cache = tmp_path / "hf-cache" / "datasets"
    hub_cache_entry(cache, "seqnlp-test/tiny_ner", {"train": rows * 3, "validation": rows})
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    assert datasets.config.HF_HUB_OFFLINE  # the suite never reaches the network (tests/conftest.py)
    task = task_for(dataset="seqnlp-test/tiny_ner")
    assert [len(task.read(split)) for split in ("train", "dev")] == [3, 1] and task.read("test") is None
    assert task.read("dev")[0].tags == ["B-PER", "O", "O", "B-LOC"]
