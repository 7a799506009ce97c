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


# -- per-unit sufficient statistics, for bootstrap intervals and paired tests (seqnlp.evaluation.evidence) ---


def entity_statistics(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]], types: Sequence[str]):
    """A row per sentence: ``[correct, predicted, gold]`` entity counts, then the same for each of ``types``."""
    from seqnlp.data.tags import to_spans
    from seqnlp.evaluation.evidence import UnitStatistics, span_scores

    column = {t: 3 * (i + 1) for i, t in enumerate(types)}
    rows = []
    for g, p in zip(gold, predicted):
        gold_spans, predicted_spans = set(to_spans(g)), set(to_spans(p))
        row = [0] * (3 * (len(types) + 1))
        for offset, found in enumerate((gold_spans & predicted_spans, predicted_spans, gold_spans)):
            row[offset] += len(found)
            for entity_type, _, _ in found:
                row[column[entity_type] + offset] += 1
        rows.append(row)
    scores = dict(span_scores(0, 1, 2))
    for t in types:
        scores.update(
            {("per_type", t, name): f for name, f in span_scores(column[t], column[t] + 1, column[t] + 2).items()}
        )
    return UnitStatistics("sentences", rows, scores)


def classification_statistics(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]):
    """A row per example: the one cell of the ``labels`` x ``labels`` confusion matrix (gold, predicted) it adds to."""
    import numpy as np

    from seqnlp.evaluation.evidence import UnitStatistics, ratio

    index, size = {label: i for i, label in enumerate(labels)}, len(labels)
    rows = np.zeros((len(gold), size * size))
    rows[np.arange(len(gold)), [index[g] * size + index[p] for g, p in zip(gold, predicted)]] = 1

    def confusion(sums):
        return sums.reshape(-1, size, size)  # [resamples, gold, predicted]

    def f1s(sums):
        matrix = confusion(sums)
        correct = np.diagonal(matrix, axis1=1, axis2=2)
        return ratio(2 * correct, matrix.sum(1) + matrix.sum(2))

    def macro_f1(sums):
        matrix = confusion(sums)
        occurring = (matrix.sum(1) + matrix.sum(2)) > 0  # as classification_scores: classes seen in gold or predicted
        return (f1s(sums) * occurring).sum(1) / np.maximum(1, occurring.sum(1))

    def per_class(i, name):
        def score(sums):
            matrix = confusion(sums)
            if name == "precision":
                return ratio(matrix[:, i, i], matrix[:, :, i].sum(1))
            if name == "recall":
                return ratio(matrix[:, i, i], matrix[:, i].sum(1))
            return f1s(sums)[:, i]

        return score

    scores = {"accuracy": lambda sums: np.trace(confusion(sums), axis1=1, axis2=2) / sums.sum(1), "macro_f1": macro_f1}
    for i, label in enumerate(labels):
        scores.update({("per_class", label, name): per_class(i, name) for name in ("precision", "recall", "f1")})
    return UnitStatistics("examples", rows, scores)


def translation_statistics(hypotheses: Sequence[str], references: Sequence[str]):
    """A row per sentence pair: sacreBLEU's own sufficient statistics for BLEU, then for chrF."""
    import numpy as np
    import sacrebleu

    from seqnlp.evaluation.evidence import UnitStatistics

    scores, blocks, start = {}, [], 0
    for name, metric in (("bleu", sacrebleu.metrics.BLEU()), ("chrf", sacrebleu.metrics.CHRF())):
        rows = np.asarray(metric._extract_corpus_statistics(list(hypotheses), [list(references)]), dtype=np.float64)
        end = start + rows.shape[1]
        scores[name] = lambda sums, m=metric, a=start, b=end: np.array(
            [m._compute_score_from_stats(list(row[a:b])).score for row in sums]
        )
        blocks.append(rows)
        start = end
    return UnitStatistics("sentence pairs", np.concatenate(blocks, axis=1), scores)


def language_model_statistics(chunks: Sequence[tuple[float, int]], chunk_chars: int):
    """A row per chunk of text: ``(nats, characters)``."""
    import numpy as np

    from seqnlp.evaluation.evidence import UnitStatistics

    def loss(sums):
        return sums[:, 0] / np.maximum(1, sums[:, 1])

    scores = {
        "loss": loss,
        "bpc": lambda sums: loss(sums) / math.log(2),
        "perplexity": lambda sums: np.exp(np.minimum(loss(sums), 50.0)),
    }
    return UnitStatistics(f"chunks of {chunk_chars} characters", list(chunks), scores)


def character_class(char: str) -> str:
    """Which of a language model's character classes ``char`` falls in (a vocabulary's special symbols: other)."""
    if char == "\n":
        return "newlines"
    if char.isspace():
        return "spaces"
    if len(char) != 1:
        return "other"
    if char.isalpha():
        return "letters"
    if char.isdigit():
        return "digits"
    return "punctuation" if char.isprintable() else "other"


def loss_by_character_class(chars: Sequence[str], nats: Sequence[float], counts: Sequence[float]) -> dict:
    """``{class: {characters, share, loss, share_of_loss}}`` from the summed nats and counts of each predicted
    character id (``chars``: the vocabulary's characters by id), the classes that occur, most characters first."""
    classes: dict[str, list[float]] = {}
    for char, n, c in zip(chars, nats, counts):
        if c:
            totals = classes.setdefault(character_class(char), [0.0, 0.0])
            totals[0] += n
            totals[1] += c
    all_nats, all_chars = sum(n for n, _ in classes.values()), sum(c for _, c in classes.values())
    return {
        name: {"characters": int(c), "share": c / all_chars, "loss": n / c, "share_of_loss": n / max(all_nats, 1e-12)}
        for name, (n, c) in sorted(classes.items(), key=lambda item: -item[1][1])
    }


# -- error analysis ----------------------------------------------------------------------------------------------

ERROR_KINDS = ("wrong type", "wrong boundary", "wrong type and boundary", "missed", "spurious")


def entity_errors(gold_spans: set, predicted_spans: set) -> list[tuple[str, tuple | None, tuple | None]]:
    """Each entity error of one sentence as ``(kind, gold span, predicted span)`` (spans are ``(type, start,
    end)``): a gold entity not found exactly is of the wrong type (a predicted entity has its span), of the wrong
    boundary (an overlapping one has its type), of both (another overlaps it) or missed (none overlaps); a predicted
    entity that overlaps no gold entity is spurious."""

    def overlap(a, b):
        return a[1] < b[2] and b[1] < a[2]

    errors = []
    for g in sorted(gold_spans - predicted_spans, key=lambda s: s[1:]):
        near = sorted((p for p in predicted_spans if overlap(g, p)), key=lambda s: s[1:])
        same_span = [p for p in near if p[1:] == g[1:]]
        same_type = [p for p in near if p[0] == g[0]]
        if same_span:
            errors.append(("wrong type", g, same_span[0]))
        elif same_type:
            errors.append(("wrong boundary", g, same_type[0]))
        elif near:
            errors.append(("wrong type and boundary", g, near[0]))
        else:
            errors.append(("missed", g, None))
    errors += [("spurious", None, p) for p in sorted(predicted_spans, key=lambda s: s[1:])
               if not any(overlap(p, g) for g in gold_spans)]  # fmt: skip
    return errors


def entity_error_analysis(gold, predicted, tokens=None, known_words=None) -> dict:
    """Entity errors by kind and type, the most confused type pairs, and F1 by entity length and (given the
    ``tokens`` and the training vocabulary ``known_words``) for entities whose words were all seen in training
    against those with a word that was not."""
    from collections import Counter

    from seqnlp.data.tags import to_spans

    by_kind: dict = {}
    confused: Counter = Counter()
    groups: dict = {}  # group name -> [correct, predicted, gold]

    def count(group, column):
        groups.setdefault(group, [0, 0, 0])[column] += 1

    def group_of(span, words):
        length = span[2] - span[1]
        names = [("length", str(length) if length < 4 else "4+")]
        if words is not None and known_words is not None:
            names.append(("words", "seen" if all(w in known_words for w in words[span[1] : span[2]]) else "unseen"))
        return names

    for i, (g, p) in enumerate(zip(gold, predicted)):
        gold_spans, predicted_spans = set(to_spans(g)), set(to_spans(p))
        words = tokens[i] if tokens is not None else None
        for span in gold_spans & predicted_spans:
            for group in group_of(span, words):
                count(group, 0)
        for span in predicted_spans:
            for group in group_of(span, words):
                count(group, 1)
        for span in gold_spans:
            for group in group_of(span, words):
                count(group, 2)
        for kind, g_span, p_span in entity_errors(gold_spans, predicted_spans):
            entity_type = (g_span or p_span)[0]
            by_kind.setdefault(entity_type, dict.fromkeys(ERROR_KINDS, 0))[kind] += 1
            if kind in ("wrong type", "wrong type and boundary"):
                confused[(g_span[0], p_span[0])] += 1

    def f1(counts):
        correct, predicted_count, gold_count = counts
        return {"f1": 2 * correct / (predicted_count + gold_count) if predicted_count + gold_count else 0.0,
                "gold": gold_count, "predicted": predicted_count}  # fmt: skip

    analysis = {
        "errors_by_type": dict(sorted(by_kind.items())),
        "confused_types": [{"gold": g, "predicted": p, "count": n} for (g, p), n in confused.most_common(5)],
        "f1_by_length": {name: f1(c) for (kind, name), c in sorted(groups.items()) if kind == "length"},
    }
    if tokens is not None and known_words is not None:
        analysis["f1_by_words"] = {name: f1(c) for (kind, name), c in sorted(groups.items()) if kind == "words"}
    return analysis


def calibration(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> dict:
    """Expected calibration error: over ``bins`` equal-width bins of confidence, the share of items in each bin times
    the gap between its mean confidence and its accuracy, summed; and the bins of a reliability diagram."""
    counts, confidence_sums, correct_sums = [0] * bins, [0.0] * bins, [0] * bins
    for confidence, right in zip(confidences, correct):
        b = min(bins - 1, int(confidence * bins))  # a confidence of exactly 1 falls in the last bin
        counts[b] += 1
        confidence_sums[b] += confidence
        correct_sums[b] += bool(right)
    total = sum(counts)
    shown = [
        {"low": b / bins, "high": (b + 1) / bins, "count": counts[b], "confidence": confidence_sums[b] / counts[b],
         "accuracy": correct_sums[b] / counts[b]}
        for b in range(bins) if counts[b]
    ]  # fmt: skip
    ece = sum(row["count"] / total * abs(row["accuracy"] - row["confidence"]) for row in shown) if total else 0.0
    return {"ece": ece, "items": total, "bins": shown}


def calibration_before_after(
    calibrated: Sequence[float], trained: Sequence[float], correct: Sequence[bool], fitted: dict | None
) -> dict:
    """``calibration`` of the confidences at the model's temperature; with one (``fitted``: the model's
    ``calibration`` record, None when it has none or it is turned off), also the temperature, what it was fitted on,
    and the ECE and bins of the trained (uncalibrated) confidences of the same predictions."""
    result = calibration(calibrated, correct)
    if fitted is not None:
        before = calibration(trained, correct)
        result.update(
            temperature=fitted["temperature"],
            fitted_on=fitted.get("fitted_on"),
            ece_before=before["ece"],
            bins_before=before["bins"],
        )
    return result
