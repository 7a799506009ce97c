"""Task metrics as pure functions over gold and predicted values."""

from __future__ import annotations

import math
from collections.abc import Sequence


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict:
    """Entity-level micro precision / recall / F1 (seqeval's default, conlleval-compatible mode) and per-type scores."""
    from seqeval.metrics import classification_report

    report = classification_report(gold, predicted, output_dict=True, zero_division=0)
    micro = report.pop("micro avg")
    per_type = {
        name: {
            "precision": float(r["precision"]),
            "recall": float(r["recall"]),
            "f1": float(r["f1-score"]),
            "support": int(r["support"]),
        }
        for name, r in sorted(report.items())
        if not name.endswith(" avg")
    }
    return {
        "precision": float(micro["precision"]),
        "recall": float(micro["recall"]),
        "f1": float(micro["f1-score"]),
        "per_type": per_type,
    }


def entity_f1(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict:
    """Entity-level micro precision / recall / F1 with conlleval's span rules, without importing seqeval.

    Used to select models during training: seqeval pulls in scikit-learn, SciPy and pandas
    (~120 MB resident), which would dominate a tagger run's memory. Tests check it equals
    ``entity_scores`` on random tag sequences; reported metrics always come from seqeval.
    """
    from seqnlp.data.tags import to_spans

    gold_total = predicted_total = correct = 0
    for g, p in zip(gold, predicted):
        gold_spans, predicted_spans = set(to_spans(g)), set(to_spans(p))
        gold_total += len(gold_spans)
        predicted_total += len(predicted_spans)
        correct += len(gold_spans & predicted_spans)
    precision = correct / predicted_total if predicted_total else 0.0
    recall = correct / gold_total if gold_total else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def token_accuracy(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> float:
    pairs = [(g, p) for gs, ps in zip(gold, predicted) for g, p in zip(gs, ps)]
    return sum(g == p for g, p in pairs) / max(1, len(pairs))


def classification_scores(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict:
    """Accuracy, macro-F1, per-class P/R/F1/support and the confusion matrix (rows gold, columns predicted)."""
    index = {label: i for i, label in enumerate(labels)}
    confusion = [[0] * len(labels) for _ in labels]
    for g, p in zip(gold, predicted):
        confusion[index[g]][index[p]] += 1
    per_class = {}
    for i, label in enumerate(labels):
        tp = confusion[i][i]
        predicted_i = sum(row[i] for row in confusion)
        support = sum(confusion[i])
        precision = tp / predicted_i if predicted_i else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    correct = sum(confusion[i][i] for i in range(len(labels)))
    # Macro-F1 over the classes that occur (in gold or predicted), as scikit-learn's default: a class the model
    # knows but the data never shows (kept from a base model when fine-tuning) is not a class of this task.
    occurring = [c for i, c in enumerate(per_class.values()) if c["support"] or any(row[i] for row in confusion)]
    return {
        "accuracy": correct / max(1, len(gold)),
        "macro_f1": sum(c["f1"] for c in occurring) / max(1, len(occurring)),
        "per_class": per_class,
        "confusion_matrix": {"labels": list(labels), "matrix": confusion},
    }


def language_model_scores(total_nats: float, num_chars: int) -> dict:
    """Loss in nats per character, bits per character and perplexity."""
    loss = total_nats / max(1, num_chars)
    return {"loss": loss, "bpc": loss / math.log(2), "perplexity": math.exp(min(loss, 50.0))}


def translation_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict:
    """sacreBLEU BLEU and chrF on detokenized text, with their signatures."""
    import sacrebleu

    bleu = sacrebleu.metrics.BLEU()
    chrf = sacrebleu.metrics.CHRF()
    bleu_score = bleu.corpus_score(list(hypotheses), [list(references)])
    chrf_score = chrf.corpus_score(list(hypotheses), [list(references)])
    return {
        "bleu": bleu_score.score,
        "chrf": chrf_score.score,
        "signature": {"bleu": str(bleu.get_signature()), "chrf": str(chrf.get_signature())},
    }
