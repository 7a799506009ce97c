"""Serving: ``server`` answers HTTP requests with a loaded model (PyTorch or an export); ``export`` turns a model
directory into ONNX graphs (torch side); ``runtime`` predicts with them through onnxruntime and NumPy, never
importing torch, and runs the searches over the graphs' outputs that ``seqnlp.nn`` writes once for both runtimes
(``crf_decoding``, ``beam``, ``sampling``)."""

MANIFEST = "onnx.json"  # what marks an exported folder, beside the model's config.json
FORMAT = "seqnlp-onnx"
FORMAT_VERSION = 1


def is_export(path) -> bool:
    """Whether ``path`` is a folder that ``seqnlp export`` wrote."""
    from pathlib import Path

    return (Path(path) / MANIFEST).is_file()
