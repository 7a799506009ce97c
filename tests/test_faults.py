"""The error and fault contract, tried the way a careless or hostile user would.

Every failure is one line ``error: ...`` with exit status 2 and no traceback; a failed, killed or
crashed run never loses an earlier model or checkpoint; a model directory is untrusted input.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from seqnlp.io import COMPLETE_MARKER, LOCK_FILE, atomic_directory, existing_directory, write_json
from tests.conftest import ROOT, TINY_NER, run_cli


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
    assert run_cli("train", "ner", "--train-file", train, "--dev-file", dev, "--output-dir", out, "--epochs", "1", *TINY_NER)[0] == 0
    os.replace(out / "model", out / "model.old")  # the first rename of the next save happened, the second did not
    code, stdout, err = run_cli("evaluate", out / "model", "--test-file", dev)
    assert code == 0, err
    assert json.loads(stdout)["test"]["f1"] >= 0


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
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


def test_a_full_disk_is_one_error_line_and_keeps_the_earlier_model(small_disk, tmp_path, conll_files):
    train, dev = conll_files
    out = small_disk / "run"
    tiny = [a if a != "16" else "8" for a in TINY_NER]
    code, _, err = run_cli("train", "ner", "--train-file", train, "--dev-file", dev, "--output-dir", out, "--epochs", "1", *tiny)
    assert code == 0, err
    before = (out / "model" / "model.safetensors").read_bytes()
    fill(small_disk / "filler")
    code, _, err = run_cli("train", "ner", "--train-file", train, "--dev-file", dev, "--output-dir", out, "--overwrite",
                           "--epochs", "1", *[a if a != "8" else "40" for a in tiny])
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
    code, _, err = run_cli("train", "ner", "--train-file", train, "--dev-file", dev, "--output-dir", out, "--epochs", "2", *TINY_NER)
    assert code == 0, err
    return out, train, dev


def test_a_fresh_run_refuses_a_used_output_folder(trained):
    out, train, dev = trained
    before = (out / "metrics.json").read_bytes()
    code, _, err = run_cli("train", "ner", "--train-file", train, "--dev-file", dev, "--output-dir", out, *TINY_NER)
    assert_one_error_line(code, err, "is not empty", "--overwrite")
    assert (out / "metrics.json").read_bytes() == before


def test_overwrite_keeps_the_old_model_and_metrics_until_the_new_run_has_a_model(trained, conll_files):
    out, train, dev = trained
    model_before = (out / "model" / "model.safetensors").read_bytes()
    metrics_before = (out / "metrics.json").read_bytes()
    code, _, err = run_cli("train", "ner", "--train-file", "missing.txt", "--dev-file", dev, "--output-dir", out, "--overwrite", *TINY_NER)
    assert_one_error_line(code, err, "missing.txt: file not found")
    assert (out / "model" / "model.safetensors").read_bytes() == model_before
    assert (out / "metrics.json").read_bytes() == metrics_before
    code, _, err = run_cli("train", "ner", "--train-file", train, "--dev-file", dev, "--output-dir", out, "--overwrite",
                           "--epochs", "1", "--seed", "9", *TINY_NER[:-2])
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
    code, _, err = run_cli("train", "ner", "--train-file", train, "--dev-file", dev, "--output-dir", tmp_path / "file", *TINY_NER)
    assert_one_error_line(code, err, "the output folder is a file")


def test_a_second_run_into_a_busy_folder_fails_at_once(tmp_path, conll_files):
    train, dev = conll_files
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time\n"
        f"h = open({str(out / LOCK_FILE)!r}, 'a+'); fcntl.flock(h, fcntl.LOCK_EX)\n"
        "print('locked', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.perf_counter()
        code, _, err = run_cli("train", "ner", "--train-file", train, "--dev-file", dev, "--output-dir", out, "--resume", *TINY_NER)
        assert_one_error_line(code, err, "another seqnlp run is using this output folder")
        assert time.perf_counter() - started < 5
    finally:
        holder.kill()
        holder.wait()
    # The kernel dropped the killed holder's lock: no stale lock stays behind.
    code, _, err = run_cli("train", "ner", "--train-file", train, "--dev-file", dev, "--output-dir", out, "--epochs", "1", *TINY_NER)
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
    assert run_cli("train", "ner", "--train-file", conll, "--dev-file", conll, "--output-dir", base / "ner", "--epochs", "1", *TINY_NER)[0] == 0
    de = "\n".join(["Ein Hund läuft.", "Eine Frau liest.", "Zwei Männer laufen."] * 6) + "\n"
    en = "\n".join(["A dog runs.", "A woman reads.", "Two men run."] * 6) + "\n"
    prefix = write_pair(base, "train", de, en)
    code, _, err = run_cli("train", "translate", "--train-file", prefix, "--dev-file", prefix, "--output-dir", base / "translate",
                           *TINY, "--epochs", "1")
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
    "weights garbage": ("ner", write_file("model.safetensors", b"\xff" * 64), "model.safetensors: not a valid safetensors file"),
    "weights missing": ("ner", remove("model.safetensors"), "model.safetensors: file not found"),
    "weights dangling link": ("ner", dangling_link("model.safetensors"), "model.safetensors: file not found (a dangling link)"),
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
    "format version": ("ner", edit_config(lambda d: d.__setitem__("format_version", 99)), "model format version 99 is not supported"),
    "task missing": ("ner", edit_config(lambda d: d.pop("task")), "'task' must be a JSON string"),
    "task unknown": ("ner", edit_config(lambda d: d.__setitem__("task", "poetry")), "unknown task 'poetry'"),
    "settings missing": ("ner", edit_config(lambda d: d.pop("config")), "'config' must be a JSON object"),
    "assets missing": ("ner", edit_config(lambda d: d.pop("assets")), "'assets' must be a JSON object"),
    "assets vocabulary not a list": ("ner", edit_config(lambda d: d["assets"]["words"].__setitem__("tokens", "abc")), "'tokens' is a list of strings"),
    "assets tags missing": ("ner", edit_config(lambda d: d["assets"].pop("tags")), "invalid vocabulary or tokenizer assets (KeyError"),
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
    code, _, err = run_cli("train", "ner", "--init-from", tmp_path / "model", "--train-file", data, "--output-dir", tmp_path / "out", "--quiet")
    assert_one_error_line(code, err, "invalid value for hidden: 30000")


def test_init_from_never_reads_data_paths_from_the_model(model_dirs, tmp_path):
    original, data = model_dirs["ner"]
    shutil.copytree(original, tmp_path / "model")
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-LINE\n")
    edit_config(lambda d: d["config"].update(dev_file=str(secret), test_file=str(secret), pretrained_vectors=str(secret),
                                             dataset="x", output_dir="/", epochs=999))(tmp_path / "model")
    code, out, err = run_cli("train", "ner", "--init-from", tmp_path / "model", "--train-file", data,
                             "--output-dir", tmp_path / "out", "--epochs", "1", "--quiet")
    assert code == 0, err
    assert "TOP-SECRET" not in out + err
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["config"]["dev_file"] is None and metrics["config"]["epochs"] == 1 and "test" not in metrics


def test_init_from_a_model_of_another_task_names_it(model_dirs, tmp_path):
    original, _ = model_dirs["ner"]
    table = tmp_path / "train.tsv"
    table.write_text("sentence\tlabel\ngood\t1\nbad\t0\n" * 5)
    code, _, err = run_cli("train", "sentiment", "--init-from", original, "--train-file", table, "--output-dir", tmp_path / "out")
    assert_one_error_line(code, err, str(original), "this is a ner model, not a sentiment model")


def test_a_bad_checkpoint_state_is_one_error_line_on_resume(model_dirs, tmp_path, conll_files):
    train, dev = conll_files
    out = tmp_path / "run"
    assert run_cli("train", "ner", "--train-file", train, "--dev-file", dev, "--output-dir", out, "--epochs", "1", *TINY_NER)[0] == 0
    (out / "checkpoints" / "last" / "trainer_state.json").write_text('{"state": {"epoch": "x"}}')
    code, _, err = run_cli("train", "ner", "--output-dir", out, "--resume", "--epochs", "2", "--quiet")
    assert_one_error_line(code, err, "trainer_state.json")
