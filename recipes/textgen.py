"""Text generation: a character-level LSTM language model with truncated BPTT, scored in nats and bits per character.

python recipes/textgen.py                               # the sample in data/textgen
python recipes/textgen.py --train-file train.txt --dev-file val.txt --max-minutes 20
python recipes/textgen.py --diagnose-gradients          # vanishing / exploding gradients, measured
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from seqnlp.cli import recipe  # noqa: E402

if __name__ == "__main__":
    sys.exit(recipe("textgen"))  # no data given: the sample in seqnlp/tasks/textgen/sample (data/textgen)
