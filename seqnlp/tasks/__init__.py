"""The tasks: one package each, holding everything about the task.

A task package ``<name>/`` has ``task.py`` (its config and ``Task`` subclass, registered with ``@register``),
``model.py`` (its ``nn.Module``), ``export.py`` (its ONNX graphs: ``graphs(task, model)``, and ``refusal(task)``
where some of its models cannot export) and ``runner.py`` (``RUNNER``: what predicts from an export with
onnxruntime and NumPy, without torch). Other distributions add tasks through the entry-point group
``seqnlp.tasks`` (``name = "their.package"``), laid out the same way, or as one module that holds every part
(its runner then imports what the module imports, torch included).

Nothing here imports torch, so that a torch-free runtime finds a task's runner through it.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from importlib.metadata import entry_points
from types import ModuleType

ENTRY_POINT_GROUP = "seqnlp.tasks"
PARTS = ("task", "model", "export", "runner")


def task_packages() -> dict[str, str]:
    """``{task name: package}``: this folder's task packages, then those that installed distributions register
    (a name taken here stays ours)."""
    packages = {m.name: f"{__name__}.{m.name}" for m in pkgutil.iter_modules(__path__) if m.ispkg}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        packages.setdefault(point.name, point.value)
    return packages


def task_names() -> list[str]:
    return sorted(task_packages())


def task_part(name: str, part: str) -> ModuleType | None:
    """Module ``part`` (one of ``PARTS``) of task ``name``'s package; None when the task or that part is absent."""
    package = task_packages().get(name)
    if package is None:
        return None
    if importlib.util.find_spec(package).submodule_search_locations is None:  # a task in one module
        return importlib.import_module(package)
    try:
        return importlib.import_module(f"{package}.{part}")
    except ModuleNotFoundError as err:
        if err.name == f"{package}.{part}":
            return None
        raise
