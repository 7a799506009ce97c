"""Which implementation runs each of training's hot paths, declared in one place.

Every choice gives the same arithmetic up to float rounding (the tests compare each pair), so a choice changes
speed and nothing else; ``benchmarks/translate_speed.py`` times each against the default through ``use``. What
changes results is a model setting instead: the translator's decoding precision is ``int8_decoding``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, fields, replace

PRODUCTS = ("onednn", "torch")
INPUT_FEEDING = ("hand", "autograd")


@dataclass(frozen=True)
class Kernels:
    # float32 CPU matrix products of training: oneDNN's where they apply (seqnlp.nn.gemm), or PyTorch's (MKL)
    products: str = "onednn"
    # a large training product's rows are rounded up to a multiple of this, so that oneDNN's kernels for its
    # shapes recur (seqnlp.nn.gemm.LARGE); 1: the rows as they come
    row_multiple: int = 64
    # teacher forcing with input feeding: differentiated by hand (seqnlp.nn.input_feeding) or autograd's step loop
    input_feeding: str = "hand"

    def __post_init__(self):
        if self.products not in PRODUCTS:
            raise ValueError(f"products must be one of {PRODUCTS}, not {self.products!r}")
        if self.input_feeding not in INPUT_FEEDING:
            raise ValueError(f"input_feeding must be one of {INPUT_FEEDING}, not {self.input_feeding!r}")
        if self.row_multiple < 1:
            raise ValueError(f"row_multiple must be at least 1, not {self.row_multiple}")


_selected = [Kernels()]


def current() -> Kernels:
    """The kernels in use (the defaults unless inside ``use``)."""
    return _selected[0]


@contextlib.contextmanager
def use(**choices):
    """Within the block, the given choices replace the current ones: ``with kernels.use(products="torch"): ...``.
    The choice is the process's (products are called from every layer), so blocks do not run concurrently."""
    unknown = set(choices) - {f.name for f in fields(Kernels)}
    if unknown:
        raise ValueError(f"no kernel choice {sorted(unknown)[0]!r}")
    before = _selected[0]
    _selected[0] = replace(before, **choices)
    try:
        yield _selected[0]
    finally:
        _selected[0] = before
