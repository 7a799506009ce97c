"""Training: the run (train -> evaluate -> report), the one Trainer, optimizers, data-parallel runs, fine-tuning,
repeated seeds, gradient diagnosis and the heap settings of a long run."""

import os

# PyTorch's CPU allocator asks for transparent huge pages for buffers of 2 MiB and more when this is set before it
# first allocates: a step's large activations are freshly mapped memory, and faulting them in 4 KiB pages took a
# sixth of a char-LM epoch (docs/experiments.md, "glibc's heap"). A value the user set stays.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
