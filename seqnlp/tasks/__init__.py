"""Task registry: importing this package registers every task."""

from seqnlp.tasks import ner, sentiment, textgen, translate  # noqa: F401
from seqnlp.tasks.base import TASKS, Task, get_task, load_model_dir, save_model_dir  # noqa: F401
