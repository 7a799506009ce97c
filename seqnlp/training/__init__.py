"""Training: the run (train -> evaluate -> report), the one Trainer, optimizers, data-parallel runs, fine-tuning,
repeated seeds, gradient diagnosis and the heap settings of a long run."""
