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



def reference_streams(references: list[list[str]]) -> list[list[str | None]]:
    """sacrebleu's reference streams from each input's references; None fills the streams of inputs with fewer."""
    most = max(len(refs) for refs in references)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(most)]


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
    metric = sacrebleu.metrics.BLEU()
    bleu = metric.corpus_score(predictions, reference_streams(references))
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rouge_l = [scorer.score_multi(refs, prediction)["rougeL"].fmeasure for prediction, refs in zip(predictions, references)]
    return {
        "bleu": round(bleu.score, 2),
        "bleu_signature": str(metric.get_signature()),
        "rouge_l": round(100 * sum(rouge_l) / len(rouge_l), 2),
        "n": len(predictions),
    }


def entity_metrics(y_true: list[list[str]], y_pred: list[list[str]]) -> dict:
    """Entity-level precision/recall/F1 (exact span and type, micro and per type) with seqeval, as the CoNLL and
    WNUT shared tasks score them, plus token accuracy (a secondary number: most tokens are `O`).

    Args:
        y_true, y_pred: one list of BIO tags per sentence, word-aligned.
    """
    from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score

    report = classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    return {
        "f1": float(f1_score(y_true, y_pred, zero_division=0)),
        "precision": float(precision_score(y_true, y_pred, zero_division=0)),
        "recall": float(recall_score(y_true, y_pred, zero_division=0)),
        "token_accuracy": float(accuracy_score(y_true, y_pred)),
        "sentences": len(y_true),
        "entities": int(report["micro avg"]["support"]) if "micro avg" in report else 0,
        "per_type": {
            name: {"precision": float(scores["precision"]), "recall": float(scores["recall"]),
                   "f1": float(scores["f1-score"]), "support": int(scores["support"])}
            for name, scores in report.items() if not name.endswith(" avg")
        },
    }
