"""The seqnlp command, with one process of a run signalling itself just before a given training step, so that tests
stop or kill a run at a known step instead of watching its log.

    python tests/signal_at_step.py RANK EPOCH STEP SIGNAL seqnlp-arguments...

RANK: the process that signals itself (its ``RANK`` variable; 0 without one); EPOCH and STEP count from 1, STEP
within the epoch; SIGNAL: a name such as SIGTERM or SIGKILL.
"""

import os
import signal
import sys

from seqnlp.cli import main
from seqnlp.training.trainer import Trainer

rank, epoch, step, name, *argv = sys.argv[1:]
if os.environ.get("RANK", "0") == rank:
    take_step = Trainer._step

    def signalled_step(trainer, batch):
        if (trainer.state.epoch + 1, trainer.state.step_in_epoch + 1) == (int(epoch), int(step)):
            os.kill(os.getpid(), getattr(signal, name))
        return take_step(trainer, batch)

    Trainer._step = signalled_step
sys.exit(main(argv))
