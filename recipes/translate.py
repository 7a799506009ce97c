"""Translation: BiLSTM encoder, attentional LSTM decoder (input feeding optional), beam search, scored with sacreBLEU.

python recipes/translate.py                             # the sample in data/translate (German -> English)
python recipes/translate.py --train-file multi30k/train --dev-file multi30k/val --src-lang de --tgt-lang en
--max-minutes 60
python recipes/translate.py --dataset wmt16 --dataset-config de-en --src-lang de --tgt-lang en
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from seqnlp.cli import recipe  # noqa: E402

if __name__ == "__main__":
    sys.exit(recipe("translate"))  # no data given: the sample in seqnlp/tasks/translate/sample (data/translate)
