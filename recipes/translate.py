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
    sys.exit(
        recipe(
            "translate",
            {
                "train_file": str(ROOT / "data/translate/train"),
                "max_minutes": 1.5,
                "dev_file": str(ROOT / "data/translate/val"),
                "test_file": str(ROOT / "data/translate/test"),
            },
        )
    )
