"""seqnlp: fast, honest recurrent sequence models for NLP.

``seqnlp.load(path).predict(texts)``, ``seqnlp.train(task, **settings)``, ``seqnlp.evaluate(model, data)``,
``seqnlp.export(model_dir, out_dir)``:
see ``seqnlp/api.py`` and the README.
"""

import os

# oneDNN caches one RNN primitive (with its workspace) per input shape; length-bucketed batches
# have hundreds of shapes, which grew a CoNLL training run by ~150 MB. A small cache costs nothing
# measurable in speed. Set before torch is first imported; an explicit user setting wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "8")

__version__ = "0.1.0"

from seqnlp.api import Model, evaluate, export, load, train  # noqa: E402  (after the environment is set)
from seqnlp.predictions import Classification, Entity, Generation, Tagging, Translation  # noqa: E402

__all__ = [
    "Classification",
    "Entity",
    "Generation",
    "Model",
    "Tagging",
    "Translation",
    "__version__",
    "evaluate",
    "export",
    "load",
    "train",
]
