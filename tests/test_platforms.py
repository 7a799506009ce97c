"""What seqnlp needs of the operating system: Linux-only modules are imported where they are used, with a form
for Windows, and the rest works without them. Run in a fresh interpreter in which those modules cannot be
imported."""

import subprocess
import sys

from tests.conftest import ROOT

# A tiny msvcrt with Windows' non-blocking byte lock over flock, so that the Windows branch runs here.
FAKE_MSVCRT = """
import fcntl as _fcntl, sys, types
msvcrt = types.ModuleType("msvcrt")
msvcrt.LK_NBLCK = 2
def locking(fd, mode, nbytes):
    assert mode == msvcrt.LK_NBLCK and nbytes == 1
    _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
msvcrt.locking = locking
sys.modules["msvcrt"] = msvcrt
"""


def run_without(modules: list[str], code: str, prelude: str = "") -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter where importing any of ``modules`` fails, as on a platform without them."""
    blocked = "".join(f"sys.modules[{name!r}] = None\n" for name in modules)
    script = f"import sys\n{prelude}\n{blocked}\n{code}"
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_training_imports_and_reads_memory_without_resource():
    done = run_without(
        ["resource"],
        "from seqnlp.training import heap, run, trainer\nprint(sorted(heap.memory_mib()))",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"  # no peak to read: no memory figures rather than a crash


def test_the_output_folder_lock_takes_windows_locking_without_fcntl(tmp_path):
    code = (
        "from seqnlp.storage.folders import OutputDirectory, FolderBusy\n"
        f"first = OutputDirectory({str(tmp_path)!r}).acquire()\n"
        "import os\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    try:\n"
        f"        OutputDirectory({str(tmp_path)!r}).acquire()\n"
        "        os._exit(1)\n"
        "    except FolderBusy:\n"
        "        os._exit(7)\n"
        "print(os.waitpid(pid, 0)[1] >> 8)\n"
    )
    done = run_without(["fcntl"], code, prelude=FAKE_MSVCRT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "7"  # a second process finds the folder busy through the Windows branch


def test_saving_a_folder_skips_flushing_directories_where_they_cannot_be_opened(tmp_path):
    code = (
        "import os\n"
        "del os.O_DIRECTORY\n"
        "from seqnlp.storage.folders import atomic_directory, existing_directory\n"
        f"with atomic_directory({str(tmp_path / 'model')!r}) as tmp:\n"
        "    (tmp / 'weights').write_text('w')\n"
        f"print(existing_directory({str(tmp_path / 'model')!r}) is not None)\n"
    )
    done = run_without([], code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True" and (tmp_path / "model" / "weights").read_text() == "w"
