"""Task registry: importing this package imports every module in it, and each registers its task (``@register``)."""

import importlib
import pkgutil

from seqnlp.tasks.base import TASKS, Task, get_task, load_model_dir, save_model_dir

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["TASKS", "Task", "get_task", "load_model_dir", "save_model_dir"]
