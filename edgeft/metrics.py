"""Quality metrics shared by tune (PyTorch predictions) and compress/export (predictions from each runtime)."""

from __future__ import annotations


def classification_metrics(y_true, y_pred, labels: list[str]) -> dict:
    """Accuracy, macro-F1 and per-class precision/recall/F1/support, keyed by label name."""
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    ids = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=ids, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)),
        "rows": int(len(y_true)),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
    }



def generation_metrics(predictions: list[str], references: list[list[str]]) -> dict:
    """Corpus BLEU (sacrebleu, 13a tokens, cased; every reference of an input counts) and ROUGE-L F1, both 0-100.

    Args:
        predictions: one generated text per input.
        references: the reference texts of each input (any number, at least one).
    """
    import sacrebleu
    from rouge_score import rouge_scorer

    if len(predictions) != len(references) or any(not refs for refs in references):
        raise ValueError("one prediction and at least one reference per input")
    most = max(len(refs) for refs in references)
    # sacrebleu takes reference streams; None fills the streams of inputs with fewer references.
    streams = [[refs[k] if k < len(refs) else None for refs in references] for k in range(most)]
    metric = sacrebleu.metrics.BLEU()
    bleu = metric.corpus_score(predictions, streams)
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rouge_l = [scorer.score_multi(refs, prediction)["rougeL"].fmeasure for prediction, refs in zip(predictions, references)]
    return {
        "bleu": round(bleu.score, 2),
        "bleu_signature": str(metric.get_signature()),
        "rouge_l": round(100 * sum(rouge_l) / len(rouge_l), 2),
        "n": len(predictions),
    }
