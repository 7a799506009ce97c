"""seqnlp: fast, honest recurrent sequence models for NLP.

``seqnlp.load(path).predict(texts)``, ``seqnlp.train(task, **settings)``, ``seqnlp.evaluate(model, data)``,
``seqnlp.compare([model_a, model_b], data)``, ``seqnlp.export(model_dir, out_dir)``:
see ``seqnlp/api.py`` and the README.
"""

from seqnlp.api import Model, calibrate, compare, evaluate, export, load, train
from seqnlp.predictions import Classification, Entity, Generation, Tagging, Translation
from seqnlp.version import __version__

__all__ = [
    "Classification",
    "Entity",
    "Generation",
    "Model",
    "Tagging",
    "Translation",
    "__version__",
    "calibrate",
    "compare",
    "evaluate",
    "export",
    "load",
    "train",
]
