"""seqnlp: fast, honest recurrent sequence models for NLP."""

import os

# oneDNN caches one RNN primitive (with its workspace) per input shape; length-bucketed batches
# have hundreds of shapes, which grew a CoNLL training run by ~150 MB. A small cache costs nothing
# measurable in speed. Set before torch is first imported; an explicit user setting wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "8")

__version__ = "0.1.0"
