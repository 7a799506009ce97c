"""seqnlp: fast, honest recurrent sequence models for NLP.

``seqnlp.load(path).predict(texts)``, ``seqnlp.train(task, **settings)``, ``seqnlp.evaluate(model, data)``,
``seqnlp.export(model_dir, out_dir)``:
see ``seqnlp/api.py`` and the README.
"""

import os

# oneDNN caches one primitive per operation and input shape; length-bucketed batches have hundreds of
# shapes, which at the default capacity (1024) grew a CoNLL training run by ~150 MB. 64 still holds what a
# training step repeats (the products of every input-feeding decoder step, seqnlp.nn.gemm): at 8 those were
# built anew on every call. Set before torch is first imported; an explicit user setting wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")

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
