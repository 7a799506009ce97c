"""The error and fault contract, tried the way a careless or hostile user would.

Every failure is one line ``error: ...`` with exit status 2 and no traceback; a failed, killed or
crashed run never loses an earlier model or checkpoint; a model directory is untrusted input.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from seqnlp.storage.folders import LOCK_FILE, atomic_directory, existing_directory, write_json
from tests.conftest import ROOT, TINY_NER, run_cli, train_cli


def assert_one_error_line(code, err, *fragments):
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


# -- crashes inside a save, at every step, twice in a row ------------------------------------


class Crash(BaseException):
    """The process died: nothing after this point runs, not even cleanup."""


MUTATIONS = ("replace", "rename", "unlink", "rmdir", "fsync")


@contextmanager
def crash_at(step: int | None):
    """Kill the 'process' at the ``step``-th file-system mutation (rename, unlink, rmdir, fsync) of the block.

    From then on every mutation does nothing (a dead process cleans nothing up). ``step=None``
    only counts; the count is yielded.
    """
    originals = {name: getattr(os, name) for name in MUTATIONS}
    state = {"count": 0, "dead": False}

    def wrapped(name):
        def operation(*args, **kwargs):
            if state["dead"]:
                raise Crash
            state["count"] += 1
            if step is not None and state["count"] == step:
                state["dead"] = True
                raise Crash
            return originals[name](*args, **kwargs)

        return operation

    for name in MUTATIONS:
        setattr(os, name, wrapped(name))
    try:
        yield state
    except Crash:
        pass
    finally:
        for name, original in originals.items():
            setattr(os, name, original)


def save_version(target: Path, version: int) -> None:
    with atomic_directory(target) as tmp:
        for name in ("model.bin", "config.json"):
            (tmp / name).write_text(str(version))


def saved_version(target: Path) -> int | None:
    folder = existing_directory(target)
    if folder is None:
        return None
    versions = {(folder / name).read_text() for name in ("model.bin", "config.json")}
    assert len(versions) == 1, f"{folder} mixes two saves"
    return int(versions.pop())


def test_a_save_survives_a_crash_at_every_step_twice_in_a_row(tmp_path):
    with crash_at(None) as counted:
        save_version(tmp_path / "probe" / "model", 1)
        save_version(tmp_path / "probe" / "model", 2)
    steps = counted["count"] // 2 + 3  # a save into a used folder, plus the recovery steps a crash adds
    for first in range(1, steps + 1):
        for second in range(1, steps + 1):
            target = tmp_path / f"{first}-{second}" / "model"
            save_version(target, 1)
            with crash_at(first):
                save_version(target, 2)
            after_first = saved_version(target)
            assert after_first in (1, 2)
            with crash_at(second):
                save_version(target, 3)
            after_second = saved_version(target)
            assert after_second is not None and after_second >= after_first  # never an older save than before
            save_version(target, 4)
            assert saved_version(target) == 4
            assert sorted(p.name for p in target.parent.iterdir()) == ["model"]  # leftovers are cleaned


def test_a_crash_between_the_renames_of_model_still_evaluates(tmp_path, conll_files):
    train, dev = conll_files
    out = tmp_path / "run"
    assert (
        run_cli(
            "train", "ner", "--train-file", train, "--dev-file", dev, "--output-dir", out, "--epochs", "1", *TINY_NER
        )[0]
        == 0
    )
    os.replace(out / "model", out / "model.old")  # the first rename of the next save happened, the second did not
    code, stdout, err = run_cli("evaluate", out / "model", "--test-file", dev)
    assert code == 0, err
    # the kept model is the one that was saved: it scores what the run recorded for it
    assert json.loads(stdout)["test"] == json.loads((out / "metrics.json").read_text())["dev"]


def test_json_writes_leave_no_temporary_file_when_the_disk_is_full(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    from seqnlp.errors import SeqNLPError

    with pytest.raises(SeqNLPError, match="metrics.json: cannot write: No space left on device"):
        write_json(tmp_path / "metrics.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


# -- a real disk that fills up -----------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)], capture_output=True).returncode
        != 0
    ):
        pytest.skip("cannot mount a small tmpfs here")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


def test_a_full_disk_is_one_error_line_and_keeps_the_earlier_model(small_disk, tmp_path, conll_files):
    train, dev = conll_files
    out = small_disk / "run"
    tiny = [a if a != "16" else "8" for a in TINY_NER]
    code, _, err = run_cli(
        "train", "ner", "--train-file", train, "--dev-file", dev, "--output-dir", out, "--epochs", "1", *tiny
    )
    assert code == 0, err
    before = (out / "model" / "model.safetensors").read_bytes()
    fill(small_disk / "filler")
    code, _, err = train_cli(
        "ner",
        train,
        dev,
        out,
        "--overwrite",
        "--epochs",
        "1",
        *[a if a != "8" else "40" for a in tiny],
    )
    assert_one_error_line(code, err, "No space left on device")
    assert (out / "model" / "model.safetensors").read_bytes() == before
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != LOCK_FILE]
    assert leftovers == []


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the disk is full."""
    handle = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(handle, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(handle)


# -- the output folder ---------------------------------------------------------------------


@pytest.fixture
def trained(tmp_path, conll_files):
    train, dev = conll_files
    out = tmp_path / "run"
    code, _, err = run_cli(
        "train", "ner", "--train-file", train, "--dev-file", dev, "--output-dir", out, "--epochs", "2", *TINY_NER
    )
    assert code == 0, err
    return out, train, dev


def test_a_fresh_run_refuses_a_used_output_folder(trained):
    out, train, dev = trained
    before = (out / "metrics.json").read_bytes()
    code, _, err = train_cli("ner", train, dev, out, *TINY_NER)
    assert_one_error_line(code, err, "is not empty", "--overwrite")
    assert (out / "metrics.json").read_bytes() == before


def test_overwrite_keeps_the_old_model_and_metrics_until_the_new_run_has_a_model(trained, conll_files):
    out, train, dev = trained
    model_before = (out / "model" / "model.safetensors").read_bytes()
    metrics_before = (out / "metrics.json").read_bytes()
    code, _, err = run_cli(
        "train", "ner", "--train-file", "missing.txt", "--dev-file", dev, "--output-dir", out, "--overwrite", *TINY_NER
    )
    assert_one_error_line(code, err, "missing.txt: file not found")
    assert (out / "model" / "model.safetensors").read_bytes() == model_before
    assert (out / "metrics.json").read_bytes() == metrics_before
    code, _, err = train_cli(
        "ner",
        train,
        dev,
        out,
        "--overwrite",
        "--epochs",
        "1",
        "--seed",
        "9",
        *TINY_NER[:-2],
    )
    assert code == 0, err
    assert json.loads((out / "metrics.json").read_text())["config"]["seed"] == 9
    assert (out / "model" / "model.safetensors").read_bytes() != model_before


def test_a_trainer_killed_before_its_first_save_leaves_the_earlier_run_whole(tmp_path):
    from tests.test_trainer import config, make_trainer

    trainer, _ = make_trainer(tmp_path, config(epochs=1))
    trainer.fit()
    (tmp_path / "metrics.json").write_text("{}")
    log = (tmp_path / "train_log.jsonl").read_bytes()
    trainer, _ = make_trainer(tmp_path, config(epochs=1))
    trainer.evaluate = lambda m: (_ for _ in ()).throw(Crash())  # dies at its first evaluation, before saving
    with pytest.raises(Crash):
        trainer.fit()
    assert (tmp_path / "train_log.jsonl").read_bytes() == log
    assert (tmp_path / "metrics.json").exists() and existing_directory(tmp_path / "checkpoints" / "last")


def test_an_output_folder_that_is_a_file_is_an_error(tmp_path, conll_files):
    train, dev = conll_files
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(
        "train", "ner", "--train-file", train, "--dev-file", dev, "--output-dir", tmp_path / "file", *TINY_NER
    )
    assert_one_error_line(code, err, "the output folder is a file")


def test_a_second_run_into_a_busy_folder_fails_at_once(tmp_path, conll_files):
    train, dev = conll_files
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import fcntl, sys, time\n"
                f"h = open({str(out / LOCK_FILE)!r}, 'a+'); fcntl.flock(h, fcntl.LOCK_EX)\n"
                "print('locked', flush=True); time.sleep(3600)"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        # The holder never lets go: a run that waited for the lock would run into the timeout. The data files do not
        # exist: the busy folder is found before any data is read.
        second = subprocess.run(
            [sys.executable, "-m", "seqnlp.cli", "train", "ner", "--train-file", tmp_path / "absent.txt",
             "--output-dir", out, "--resume", *TINY_NER],
            capture_output=True, text=True, cwd=ROOT, timeout=120,
        )  # fmt: skip
        assert_one_error_line(second.returncode, second.stderr, "another seqnlp run is using this output folder")
    finally:
        holder.kill()
        holder.wait()
    # The kernel dropped the killed holder's lock: no stale lock stays behind.
    code, _, err = run_cli(
        "train", "ner", "--train-file", train, "--dev-file", dev, "--output-dir", out, "--epochs", "1", *TINY_NER
    )
    assert code == 0, err


def test_saved_models_are_readable_under_the_users_umask(trained):
    out, _, _ = trained
    assert (out / "model").stat().st_mode & 0o777 == 0o777 & ~current_umask()
    assert (out / "model" / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~current_umask()


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- tampered model directories ------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """A tiny trained NER model and translation model (which has a SentencePiece file), trained once."""
    from tests.test_translate import TINY, write_pair

    base = tmp_path_factory.mktemp("models")
    conll = base / "train.txt"
    conll.write_text("Anna B-PER\nvisited O\nOslo B-LOC\n\nTom B-PER\nsaw O\nBerlin B-LOC\n\n" * 5, encoding="utf-8")
    assert (
        train_cli(
            "ner",
            conll,
            conll,
            base / "ner",
            "--epochs",
            "1",
            *TINY_NER,
        )[0]
        == 0
    )
    de = "\n".join(["Ein Hund läuft.", "Eine Frau liest.", "Zwei Männer laufen."] * 6) + "\n"
    en = "\n".join(["A dog runs.", "A woman reads.", "Two men run."] * 6) + "\n"
    prefix = write_pair(base, "train", de, en)
    code, _, err = train_cli(
        "translate",
        prefix,
        prefix,
        base / "translate",
        *TINY,
        "--epochs",
        "1",
    )
    assert code == 0, err
    return {"ner": (base / "ner" / "model", conll), "translate": (base / "translate" / "model", prefix)}


def edit_config(change):
    def tamper(directory: Path):
        path = directory / "config.json"
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))

    return tamper


def set_setting(key, value):
    return edit_config(lambda data: data["config"].__setitem__(key, value))


def write_file(name, content: bytes):
    def tamper(directory: Path):
        target = directory / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
        target.write_bytes(content)

    return tamper


def truncate(name, keep: float):
    def tamper(directory: Path):
        data = (directory / name).read_bytes()
        (directory / name).write_bytes(data[: int(len(data) * keep)])

    return tamper


def replace_with_directory(name):
    def tamper(directory: Path):
        (directory / name).unlink()
        (directory / name).mkdir()

    return tamper


def dangling_link(name):
    def tamper(directory: Path):
        (directory / name).unlink()
        (directory / name).symlink_to(directory / "nowhere")

    return tamper


def remove(name):
    return lambda directory: (directory / name).unlink()


def edit_weights(change):
    def tamper(directory: Path):
        from safetensors.torch import load_file, save_file

        tensors = load_file(str(directory / "model.safetensors"))
        change(tensors)
        save_file(tensors, str(directory / "model.safetensors"))

    return tamper


def drop_first_tensor(tensors):
    del tensors[sorted(tensors)[0]]


def reshape_first_tensor(tensors):
    name = sorted(k for k in tensors if tensors[k].dim() == 2)[0]
    tensors[name] = torch.zeros(tensors[name].shape[0] + 1, tensors[name].shape[1])


TAMPERED = {
    "weights empty": ("ner", write_file("model.safetensors", b""), "model.safetensors: not a valid safetensors file"),
    "weights truncated": ("ner", truncate("model.safetensors", 0.5), "model.safetensors: not a valid safetensors file"),
    "weights garbage": (
        "ner",
        write_file("model.safetensors", b"\xff" * 64),
        "model.safetensors: not a valid safetensors file",
    ),
    "weights missing": ("ner", remove("model.safetensors"), "model.safetensors: file not found"),
    "weights dangling link": (
        "ner",
        dangling_link("model.safetensors"),
        "model.safetensors: file not found (a dangling link)",
    ),
    "weights a directory": ("ner", replace_with_directory("model.safetensors"), "model.safetensors: file not found"),
    "tensor missing": ("ner", edit_weights(drop_first_tensor), "weights do not match the model: missing"),
    "tensor extra": ("ner", edit_weights(lambda t: t.__setitem__("spare", torch.zeros(2))), "unexpected ['spare']"),
    "tensor reshaped": ("ner", edit_weights(reshape_first_tensor), "has shape"),
    "config missing": ("ner", remove("config.json"), "not a seqnlp model directory (no config.json)"),
    "config empty": ("ner", write_file("config.json", b""), "config.json: invalid JSON"),
    "config bad JSON": ("ner", write_file("config.json", b'{"task": '), "config.json: invalid JSON"),
    "config a list": ("ner", write_file("config.json", b"[1, 2]"), "config.json: expected a JSON object, found list"),
    "config deeply nested": ("ner", write_file("config.json", b"[" * 100000), "config.json: invalid JSON"),
    "config a directory": ("ner", replace_with_directory("config.json"), "config.json: is a directory"),
    "config not UTF-8": ("ner", write_file("config.json", b'{"task": "\xff"}'), "config.json: not UTF-8"),
    "config dangling link": ("ner", dangling_link("config.json"), "config.json: file not found (a dangling link)"),
    "format version": (
        "ner",
        edit_config(lambda d: d.__setitem__("format_version", 99)),
        "model format version 99 is not supported",
    ),
    "task missing": ("ner", edit_config(lambda d: d.pop("task")), "'task' must be a JSON string"),
    "task unknown": ("ner", edit_config(lambda d: d.__setitem__("task", "poetry")), "unknown task 'poetry'"),
    "settings missing": ("ner", edit_config(lambda d: d.pop("config")), "'config' must be a JSON object"),
    "assets missing": ("ner", edit_config(lambda d: d.pop("assets")), "'assets' must be a JSON object"),
    "assets vocabulary not a list": (
        "ner",
        edit_config(lambda d: d["assets"]["words"].__setitem__("tokens", "abc")),
        "'tokens' is a list of strings",
    ),
    "assets tags missing": (
        "ner",
        edit_config(lambda d: d["assets"].pop("tags")),
        "invalid vocabulary or tokenizer assets (KeyError",
    ),
    "hidden 30000": ("ner", set_setting("hidden", 30000), "invalid value for hidden: 30000"),
    "hidden 1e9": ("ner", set_setting("hidden", 1e9), "invalid value for hidden: 1000000000"),
    "hidden other size": ("ner", set_setting("hidden", 512), "has shape"),
    "hidden text": ("ner", set_setting("hidden", "big"), "hidden must be a whole number, not 'big'"),
    "layers 1.7": ("ner", set_setting("layers", 1.7), "layers must be a whole number, not 1.7"),
    "layers null": ("ner", set_setting("layers", None), "layers must be given a value"),
    "setting unknown": ("ner", set_setting("flux", 1), "unknown setting 'flux'"),
    "setting a list": ("ner", set_setting("cell", ["lstm"]), "cell must be of type str, not ['lstm']"),
    "subwords garbage": ("translate", write_file("source.model", b"garbage"), "invalid vocabulary or tokenizer assets"),
    "subwords missing": ("translate", remove("source.model"), "invalid vocabulary or tokenizer assets"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_a_tampered_model_directory_is_one_error_line(case, model_dirs, tmp_path):
    task, tamper, expected = TAMPERED[case]
    original, data = model_dirs[task]
    directory = tmp_path / "model"
    shutil.copytree(original, directory)
    tamper(directory)
    flag = "--test-file"
    code, _, err = run_cli("evaluate", directory, flag, data)
    assert_one_error_line(code, err, str(directory), expected)


def test_init_from_a_tampered_model_is_one_error_line(model_dirs, tmp_path):
    original, data = model_dirs["ner"]
    shutil.copytree(original, tmp_path / "model")
    set_setting("hidden", 30000)(tmp_path / "model")
    code, _, err = run_cli(
        "train",
        "ner",
        "--init-from",
        tmp_path / "model",
        "--train-file",
        data,
        "--output-dir",
        tmp_path / "out",
        "--quiet",
    )
    assert_one_error_line(code, err, "invalid value for hidden: 30000")


def test_init_from_never_reads_data_paths_from_the_model(model_dirs, tmp_path):
    original, data = model_dirs["ner"]
    shutil.copytree(original, tmp_path / "model")
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-LINE\n")
    edit_config(
        lambda d: d["config"].update(
            dev_file=str(secret),
            test_file=str(secret),
            pretrained_vectors=str(secret),
            dataset="x",
            output_dir="/",
            epochs=999,
        )
    )(tmp_path / "model")
    code, out, err = run_cli(
        "train",
        "ner",
        "--init-from",
        tmp_path / "model",
        "--train-file",
        data,
        "--output-dir",
        tmp_path / "out",
        "--epochs",
        "1",
        "--quiet",
    )
    assert code == 0, err
    assert "TOP-SECRET" not in out + err
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["config"]["dev_file"] is None and metrics["config"]["epochs"] == 1 and "test" not in metrics


def test_init_from_a_model_of_another_task_names_it(model_dirs, tmp_path):
    original, _ = model_dirs["ner"]
    table = tmp_path / "train.tsv"
    table.write_text("sentence\tlabel\ngood\t1\nbad\t0\n" * 5)
    code, _, err = run_cli(
        "train", "sentiment", "--init-from", original, "--train-file", table, "--output-dir", tmp_path / "out"
    )
    assert_one_error_line(code, err, str(original), "this is a ner model, not a sentiment model")


def test_a_bad_checkpoint_state_is_one_error_line_on_resume(model_dirs, tmp_path, conll_files):
    train, dev = conll_files
    out = tmp_path / "run"
    assert (
        run_cli(
            "train", "ner", "--train-file", train, "--dev-file", dev, "--output-dir", out, "--epochs", "1", *TINY_NER
        )[0]
        == 0
    )
    (out / "checkpoints" / "last" / "trainer_state.json").write_text('{"state": {"epoch": "x"}}')
    code, _, err = run_cli("train", "ner", "--output-dir", out, "--resume", "--epochs", "2", "--quiet")
    assert_one_error_line(code, err, "trainer_state.json")


# -- settings that do harm or crash ----------------------------------------------------------

BAD_TRAIN_SETTINGS = {
    "--warmup-steps": ("-10", "invalid value for warmup_steps: -10"),
    "--max-minutes": ("-1", "invalid value for max_minutes: -1.0"),
    "--clip-norm": ("nan", "invalid value for clip_norm: nan"),
    "--lr": ("inf", "invalid value for lr: inf"),
    "--batch-max-tokens": ("-1", "invalid value for batch_max_tokens: -1"),
    "--log-every": ("0", "invalid value for log_every: 0"),
    "--threads": ("-3", "invalid value for threads: -3"),
    "--char-out": ("0", "invalid value for char_out: 0"),
    "--seed": ("1" * 30, "invalid value for seed"),
    "--layers": ("1.7", "layers must be a whole number, not '1.7'"),
    "--hidden": ("30000", "invalid value for hidden: 30000"),
    "--dropout": ("1.5", "invalid value for dropout: 1.5"),
    "--epochs": ("0", "invalid value for epochs: 0"),
    "--eval-batch-size": ("0", "invalid value for eval_batch_size: 0"),
    "--cell": ("transformer", "invalid value for cell: 'transformer' (must be one of rnn, lstm, gru)"),
    "--patience": ("x", "patience must be a whole number, not 'x'"),
}


@pytest.mark.parametrize("flag", sorted(BAD_TRAIN_SETTINGS))
def test_a_harmful_training_setting_is_refused(flag, conll_files, tmp_path):
    value, expected = BAD_TRAIN_SETTINGS[flag]
    train, dev = conll_files
    code, _, err = train_cli(
        "ner",
        train,
        dev,
        tmp_path / "out",
        *TINY_NER,
        flag,
        value,
    )
    assert_one_error_line(code, err, expected)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "task, flag, value, expected",
    [
        ("sentiment", "--max-length", "0", "invalid value for max_length: 0"),
        ("sentiment", "--subword-vocab-size", "0", "invalid value for subword_vocab_size: 0"),
        ("translate", "--vocab-size", "0", "invalid value for vocab_size: 0"),
        ("translate", "--max-tokens", "0", "invalid value for max_tokens: 0"),
        ("translate", "--max-len-ratio", "-1", "invalid value for max_len_ratio: -1.0"),
        ("translate", "--n-best", "9", "n_best (9) must be at most beam (5)"),
        ("textgen", "--seq-len", "1", "invalid value for seq_len: 1"),
        ("textgen", "--word-embedding-lr", "1e-4", "word_embedding_lr: this task's model has no word embedding table"),
        ("translate", "--word-embedding-frozen-epochs", "1", "word_embedding_frozen_epochs: this task's model has no"),
    ],
)
def test_a_harmful_task_setting_is_refused(task, flag, value, expected, tmp_path):
    code, _, err = run_cli(
        "train", task, "--train-file", tmp_path / "any.txt", "--output-dir", tmp_path / "out", flag, value
    )
    assert_one_error_line(code, err, expected)


@pytest.mark.parametrize(
    "yaml_text, expected",
    [
        ("layers: null\n", "layers must be given a value"),
        ("layers: 1.7\n", "layers must be a whole number, not 1.7"),
        ("cell: [lstm]\n", "cell must be of type str, not ['lstm']"),
        ("cell: {a: 1}\n", "cell must be of type str"),
        ("- 1\n- 2\n", "a config file must be a mapping"),
        ("hidden: [1\n", "invalid YAML"),
    ],
)
def test_a_bad_yaml_setting_is_refused(yaml_text, expected, tmp_path, conll_files):
    train, dev = conll_files
    path = tmp_path / "settings.yaml"
    path.write_text(yaml_text)
    code, _, err = run_cli("train", "ner", "--config", path, "--train-file", train, "--output-dir", tmp_path / "out")
    assert_one_error_line(code, err, expected)


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: p.mkdir(), "is a directory, expected a YAML file"),
        (lambda p: p.write_bytes(b"hidden: \xff\n"), "not UTF-8"),
    ],
)
def test_an_unreadable_yaml_file_is_refused(make, expected, tmp_path):
    make(tmp_path / "settings.yaml")
    code, _, err = run_cli("train", "ner", "--config", tmp_path / "settings.yaml", "--output-dir", tmp_path / "out")
    assert_one_error_line(code, err, "settings.yaml: " + expected)


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--temperature", "nan"),
        ("--temperature", "0"),
        ("--top-p", "-1"),
        ("--top-k", "-3"),
        ("--beam", "-2"),
        ("--max-chars", "-1"),
        ("--seed", "-1"),
    ],
)
def test_a_bad_decoding_option_is_refused(flag, value, model_dirs, tmp_path):
    original, _ = model_dirs["ner"]
    (tmp_path / "in.txt").write_text("Anna visited Oslo\n")
    code, _, err = run_cli("predict", original, tmp_path / "in.txt", flag, value)
    assert_one_error_line(code, err, f"invalid value for {flag}")


def test_a_bad_override_is_one_error_line(model_dirs):
    original, data = model_dirs["ner"]
    code, _, err = run_cli("evaluate", original, "--test-file", data, "--set", "hidden=[1")
    assert_one_error_line(code, err, "--set hidden: invalid value")


def test_an_unknown_flag_is_one_error_line_without_the_usage_text(tmp_path):
    code, _, err = run_cli("train", "ner", "--no-such-flag", "3")
    assert_one_error_line(code, err, "unrecognized arguments: --no-such-flag")


def test_help_lists_every_setting_with_its_default_and_range():
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), pytest.raises(SystemExit):
        from seqnlp.training.run import build_parser

        build_parser("ner").parse_args(["--help"])
    text = " ".join(buffer.getvalue().split())
    assert "--hidden INT hidden units per direction; >= 1 and <= 16384; default: 256" in text
    assert "--cell {rnn,lstm,gru} recurrent cell; one of rnn, lstm, gru; default: lstm" in text
    assert "--batch-size INT examples per training batch; >= 1 and <= 1000000; default: 16" in text  # the NER default


# -- kill -9 at random moments, then --resume ------------------------------------------------


def test_a_run_killed_at_random_moments_resumes_to_the_uninterrupted_result():
    from benchmarks.faults import main

    result = main(["--kills", "2", "--epochs", "6", "--seed", "1"])
    assert result["kills"] == 2 and result["resumes_ok"] == 2
    assert result["corrupt_checkpoints"] == 0 and result["steps_lost_beyond_checkpoint"] == 0
    assert result["final_equals_uninterrupted"]


def test_resume_drops_the_log_lines_of_steps_a_killed_run_lost(tmp_path):
    from tests.test_trainer import config, make_trainer

    trainer, _ = make_trainer(tmp_path, config(epochs=2))
    trainer.fit()
    checkpoint_step = json.loads((tmp_path / "checkpoints" / "last" / "trainer_state.json").read_text())["state"][
        "step"
    ]
    with open(tmp_path / "train_log.jsonl", "a") as log:
        log.write(json.dumps({"step": checkpoint_step + 1, "loss": 1.0}) + "\n" + '{"step": 99, "lo')  # a kill mid-line
    trainer, _ = make_trainer(tmp_path, config(epochs=3))
    trainer.fit(resume=True)
    records = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "loss" in r]
    assert steps == sorted(steps) and len(steps) == len(set(steps))


# -- divergence ------------------------------------------------------------------------------


class Exploding(torch.nn.Module):
    """loss = w^2 with SGD at lr 10: w grows 19-fold a step, the loss 361-fold."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, batch):
        return (self.w**2).sum()


def test_an_exploding_loss_stops_with_an_error_and_saves_no_garbage(tmp_path):
    from seqnlp.config import RunConfig
    from seqnlp.errors import TrainingError
    from seqnlp.training.trainer import Trainer

    model = Exploding()
    config = RunConfig(epochs=1, lr=10.0, optimizer="sgd", momentum=0.0, clip_norm=0.0, quiet=True, log_every=1)
    trainer = Trainer(
        model, config, tmp_path, lambda epoch: [{"num_tokens": 1}] * 8, lambda m: {"m": 0.0}, lambda d: None, "m"
    )
    with pytest.raises(
        TrainingError,
        match=r"training diverged: .* over 10 times its first value 1; .*no model or checkpoint was saved",
    ):
        trainer.fit()
    assert not (tmp_path / "model").exists()


def test_a_non_finite_loss_does_not_claim_a_checkpoint_that_does_not_exist(tmp_path):
    from seqnlp.errors import TrainingError
    from tests.test_trainer import config, make_trainer

    trainer, model = make_trainer(tmp_path, config())
    with torch.no_grad():
        model.layer.weight.fill_(float("nan"))
    with pytest.raises(TrainingError, match="no model or checkpoint was saved"):
        trainer.fit()


# -- data sources ----------------------------------------------------------------------------


def test_a_single_data_file_is_the_training_split_only(tmp_path):
    from seqnlp.config import from_dict
    from seqnlp.tasks.sentiment.task import SentimentConfig, SentimentTask

    path = tmp_path / "all.jsonl"
    path.write_text("".join(json.dumps({"text": f"text {i}", "label": i % 2}) + "\n" for i in range(20)))
    task = SentimentTask(from_dict(SentimentConfig, {"dataset": str(path)}))
    assert len(task.read("train")) == 20
    assert task.read("dev") is None and task.read("test") is None


def test_a_single_saved_dataset_is_the_training_split_only(tmp_path):
    datasets = pytest.importorskip("datasets")
    from seqnlp.config import from_dict
    from seqnlp.tasks.sentiment.task import SentimentConfig, SentimentTask

    datasets.Dataset.from_dict({"text": ["good", "bad"] * 10, "label": [1, 0] * 10}).save_to_disk(str(tmp_path / "one"))
    task = SentimentTask(from_dict(SentimentConfig, {"dataset": str(tmp_path / "one")}))
    assert len(task.read("train")) == 20 and task.read("dev") is None and task.read("test") is None


def test_training_on_a_single_file_holds_out_its_dev_set_and_says_so(tmp_path):
    path = tmp_path / "all.jsonl"
    path.write_text(
        "".join(json.dumps({"text": t, "label": label}) + "\n" for t, label in [("good film", 1), ("bad film", 0)] * 10)
    )
    code, out, err = run_cli(
        "train",
        "sentiment",
        "--dataset",
        path,
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
    assert "is a single split: it is the training data (no test set)" in out
    assert "no dev set given: 2 of 20 training examples (10%) held out" in out
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert "test" not in metrics and metrics["protocol"]["selected_on"].startswith("2 of 20 training examples")
    assert "\x1b" not in err and "Generating" not in err  # no datasets progress bars


def test_evaluate_a_single_file_with_a_split_name_fails(model_dirs, tmp_path):
    original, _ = model_dirs["ner"]
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps({"tokens": ["Anna"], "ner_tags": ["B-PER"]}) + "\n")
    code, _, err = run_cli("evaluate", original, "--dataset", path, "--split", "nope")
    assert_one_error_line(code, err, "--split nope", "is a single split")
    code, out, err = run_cli("evaluate", original, "--dataset", path)
    assert code == 0, err


def test_textgen_without_a_dev_file_holds_out_the_end_of_its_one_text(tmp_path):
    from seqnlp.config import from_dict
    from seqnlp.tasks.textgen.task import Document, TextgenConfig, TextgenTask

    task = TextgenTask(from_dict(TextgenConfig, {}))
    train, dev, note = task.hold_out([Document("abcdefghij" * 10, "t.txt")])
    assert train[0].text + dev[0].text == "abcdefghij" * 10
    assert len(dev[0].text) == 10 and note == "the last 10 of 100 training characters (10%) held out"


def test_a_known_entity_type_in_an_unseen_tag_form_is_accepted(tmp_path):
    from seqnlp.config import from_dict
    from seqnlp.data.conll import TaggedSentence
    from seqnlp.tasks.ner.task import NERConfig, NERTask

    task = NERTask(from_dict(NERConfig, {"tag_scheme": "bioes"}))
    task.build_vocabularies([TaggedSentence(["Anna", "Berg"], ["B-PER", "E-PER"], "t:1")])
    task.check_labels([TaggedSentence(["Tom"], ["S-PER"], "d:1")])  # PER was seen, only in two-token spans
    with pytest.raises(Exception, match="entity type 'LOC' was not seen in training \\(known types: PER\\)"):
        task.check_labels([TaggedSentence(["Oslo"], ["S-LOC"], "d:2")])


# -- readers ---------------------------------------------------------------------------------


def test_a_bare_carriage_return_in_a_header_is_one_error_line(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_bytes(b"sentence\r\tlabel\nfoo\t1\n")
    code, _, err = run_cli("train", "sentiment", "--train-file", path, "--output-dir", tmp_path / "out")
    assert_one_error_line(code, err, f"{path}:1: ")


def test_deeply_nested_json_is_one_error_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("[" * 100000 + "\n")
    code, _, err = run_cli("train", "sentiment", "--train-file", path, "--output-dir", tmp_path / "out")
    assert_one_error_line(code, err, f"{path}:1: invalid JSON: nested too deeply")


@pytest.mark.parametrize(
    "row, expected",
    [
        ({"sentence": "good", "label": float("nan")}, "a label must be a string or a whole number, not float nan"),
        ({"sentence": "good", "label": True}, "a label must be a string or a whole number, not bool True"),
        ({"sentence": ["good"], "label": 1}, "the text must be a string, not list"),
        ({"sentence": {"a": 1}, "label": 1}, "the text must be a string, not dict"),
    ],
)
def test_json_values_that_are_not_text_or_labels_are_refused(row, expected, tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"sentence": "fine", "label": 0}) + "\n" + json.dumps(row) + "\n")
    code, _, err = run_cli("train", "sentiment", "--train-file", path, "--output-dir", tmp_path / "out")
    assert_one_error_line(code, err, f"{path}:2: {expected}")


def test_a_huge_bad_token_is_cut_in_the_error_line(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("Anna B-PER\n" + "x" * 1_000_000 + "\n")
    code, _, err = run_cli("train", "ner", "--train-file", path, "--output-dir", tmp_path / "out")
    assert_one_error_line(code, err, f"{path}:2: ", "(1000000 characters)")
    assert len(err) < 400


@pytest.mark.parametrize("make, expected", [(lambda p: p.mkdir(), "is a directory, expected a file")])
def test_a_directory_as_data_file_is_named_as_such(make, expected, tmp_path):
    make(tmp_path / "train.tsv")
    code, _, err = run_cli(
        "train", "sentiment", "--train-file", tmp_path / "train.tsv", "--output-dir", tmp_path / "out"
    )
    assert_one_error_line(code, err, expected)


# Root ignores file modes: these run the CLI with the permission-bypass capabilities dropped.
WITHOUT_ROOT_BYPASS = [
    "setpriv",
    "--inh-caps=-dac_override,-dac_read_search",
    "--bounding-set=-dac_override,-dac_read_search",
]


def run_without_root_bypass(*argv):
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed")
    ran = subprocess.run([*WITHOUT_ROOT_BYPASS, "true"], capture_output=True, text=True)
    if ran.returncode != 0:  # a container that refuses capability changes: setpriv itself cannot run
        pytest.skip(f"setpriv cannot run here: {ran.stderr.strip()[:200]}")
    probe = Path(tempfile.mkdtemp()) / "probe"
    probe.write_text("x")
    probe.chmod(0)
    if subprocess.run([*WITHOUT_ROOT_BYPASS, "cat", str(probe)], capture_output=True).returncode == 0:
        pytest.skip("setpriv runs but the permission-bypass capabilities stay")
    result = subprocess.run(
        [*WITHOUT_ROOT_BYPASS, sys.executable, "-m", "seqnlp.cli", *map(str, argv)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return result.returncode, result.stderr


def test_an_unreadable_data_file_is_one_error_line_without_root_privileges(tmp_path, conll_files):
    train, dev = conll_files
    train.chmod(0)
    code, err = run_without_root_bypass(
        "train", "ner", "--train-file", train, "--dev-file", dev, "--output-dir", tmp_path / "out"
    )
    assert_one_error_line(code, err, f"{train}: permission denied")


def test_an_unreadable_yaml_file_is_one_error_line_without_root_privileges(tmp_path):
    (tmp_path / "settings.yaml").write_text("hidden: 8\n")
    (tmp_path / "settings.yaml").chmod(0)
    code, err = run_without_root_bypass(
        "train", "ner", "--config", tmp_path / "settings.yaml", "--output-dir", tmp_path / "out"
    )
    assert_one_error_line(code, err, "settings.yaml: permission denied")


def test_an_unwritable_output_folder_is_one_error_line_without_root_privileges(tmp_path, conll_files):
    train, dev = conll_files
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    code, err = run_without_root_bypass(
        "train", "ner", "--train-file", train, "--dev-file", dev, "--output-dir", locked / "out", *TINY_NER
    )
    assert_one_error_line(code, err, f"{locked / 'out'}: cannot use as the output folder: Permission denied")


# -- every reader, fuzzed: the only exception ever raised is the project's own -------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from seqnlp.errors import SeqNLPError  # noqa: E402

# Bytes that have broken readers before: separators, line ends of every kind, quotes, brackets, a BOM, bad UTF-8.
PIECES = st.sampled_from(
    [
        "\t",
        ",",
        "\n",
        "\r",
        "\r\n",
        '"',
        "'",
        "[",
        "{",
        "}",
        "]",
        ":",
        "\ufeff",
        "\u2028",
        " ",
        "B-PER",
        "O",
        "sentence",
        "text",
        "label",
        "1",
        "-DOCSTART-",
        "\x00",
        "null",
        "true",
        "NaN",
    ]
)
CONTENT = st.one_of(
    st.binary(max_size=300),
    st.lists(st.one_of(PIECES, st.text(max_size=8)), max_size=40).map(
        lambda parts: "".join(parts).encode("utf-8", "surrogatepass")
    ),
)
FUZZ = settings(
    max_examples=int(os.environ.get("SEQNLP_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def only_project_errors(read) -> None:
    try:
        read()
    except SeqNLPError:
        pass


def readers():
    from seqnlp.config import RunConfig, from_dict, load_yaml
    from seqnlp.data.conll import read_conll
    from seqnlp.data.parallel import read_parallel
    from seqnlp.data.table import pick_column, read_records
    from seqnlp.data.text import read_text_lines
    from seqnlp.storage.folders import read_json, read_model_config
    from seqnlp.tasks.sentiment.task import SentimentConfig, SentimentTask
    from seqnlp.tasks.textgen.task import TextgenConfig, TextgenTask
    from seqnlp.vocab import Vocab

    return {
        "train.tsv": lambda p: read_records(p, ["sentence", "label"]),
        "train.csv": lambda p: read_records(p, ["sentence", "label"]),
        "train.jsonl": lambda p: read_records(p, ["sentence", "label"]),
        "pick.tsv": lambda p: pick_column(str(p), ["sentence", "text"]),
        "pick.jsonl": lambda p: pick_column(str(p), ["sentence", "text"]),
        "train.conll": lambda p: read_conll(p),
        "pairs.tsv": lambda p: read_parallel(str(p), "de", "en", "de", "en"),
        "lines.txt": lambda p: list(read_text_lines(p)),
        "settings.yaml": lambda p: from_dict(RunConfig, load_yaml(p)),
        "vocab.json": lambda p: Vocab.from_dict(read_json(p)),
        "sentiment.tsv": lambda p: SentimentTask(from_dict(SentimentConfig, {})).read_file(str(p)),
        "text.txt": lambda p: TextgenTask(from_dict(TextgenConfig, {})).read_file(str(p)),
        "model/config.json": lambda p: read_model_config(p.parent),
    }


@pytest.mark.parametrize("name", sorted(readers()))
def test_a_reader_raises_only_the_projects_errors(name, tmp_path):
    read = readers()[name]

    @FUZZ
    @given(content=CONTENT)
    def check(content):
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content)
        only_project_errors(lambda: read(path))

    check()
