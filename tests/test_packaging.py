"""What the package declares: every module it imports comes from a declared distribution, the base install holds
nothing of training, and a command that needs training packages says how to install them."""

import ast
import re
import subprocess
import sys
import tomllib

from seqnlp.errors import TRAINING_PACKAGES
from tests.conftest import ROOT

# Import names that differ from their distribution's name.
DISTRIBUTION = {"yaml": "pyyaml"}


def requirement_names(requirements: list[str]) -> set[str]:
    names = set()
    for requirement in requirements:
        name = re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0)
        names.add(name.lower().replace("_", "-"))
    return names


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def third_party_imports() -> set[str]:
    """The top-level names of every module ``seqnlp/`` imports, at the top or inside functions, but its own and
    the standard library's."""
    names = set()
    for path in (ROOT / "seqnlp").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split(".")[0])
    return {n for n in names if n != "seqnlp" and n not in sys.stdlib_module_names}


def test_every_imported_package_is_declared():
    declared = requirement_names(project()["dependencies"])
    for requirements in project()["optional-dependencies"].values():
        declared |= requirement_names(requirements)
    imported = {DISTRIBUTION.get(name, name).replace("_", "-") for name in third_party_imports()}
    assert imported - declared == set()


def test_the_base_install_holds_no_training_package_and_the_train_extra_holds_them_all():
    base = requirement_names(project()["dependencies"])
    train = requirement_names(project()["optional-dependencies"]["train"])
    assert not base & set(TRAINING_PACKAGES)
    assert train == set(TRAINING_PACKAGES)


def test_training_without_torch_is_one_line_that_names_the_extra():
    script = "import sys\nsys.modules['torch'] = None\nfrom seqnlp.cli import main\nsys.exit(main(['train', 'ner']))"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr == (
        "error: torch is not installed: training and PyTorch models need pip install 'seqnlp[train]' "
        "(a folder of seqnlp export runs without it)\n"
    )
