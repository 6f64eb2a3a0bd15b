"""Check an artifact against PyTorch on real inputs, pick the self-check references, and score a bundle.

The artifact is always run through `edgeft.runtime` (its own tokenizer reproduction and backend), while PyTorch gets
the transformers tokenizer, so one comparison covers both the graph and the tokenization on the device side.
"""

from __future__ import annotations

import numpy as np

# fp32 artifacts must reproduce PyTorch: every top-1 equal and logits this close (observed: 1e-7 .. 3e-7).
FP32_TOLERANCE = 1e-3
SELF_CHECK_TEXTS = 4
# A device runtime's own kernels (e.g. ARM int8) may round differently from the export host's: allow twice the
# worst deviation seen on the verification set, never less than the fp32 tolerance.
SELF_CHECK_SLACK = 2.0


def torch_logits(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 32) -> np.ndarray:
    """The reference: the PyTorch classifier on transformers' tokenization, padded to each batch's longest."""
    import torch

    chunks = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            chunks.append(model(batch["input_ids"], batch["attention_mask"]).float().numpy())
    return np.concatenate(chunks)


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict:
    """Max and mean absolute logit difference and top-1 agreement."""
    diff = np.abs(reference - candidate)
    return {
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "top1_agreement": float((reference.argmax(axis=1) == candidate.argmax(axis=1)).mean()),
        "n_inputs": int(len(reference)),
    }


def judge(result: dict, precision: str, min_agreement: float) -> dict:
    """Add the tolerance that applies and whether the artifact passed it."""
    if precision == "fp32":
        passed = result["top1_agreement"] == 1.0 and result["max_abs_diff"] <= FP32_TOLERANCE
        return {**result, "tolerance": {"max_abs_diff": FP32_TOLERANCE, "top1_agreement": 1.0}, "passed": passed}
    passed = result["top1_agreement"] >= min_agreement
    return {**result, "tolerance": {"top1_agreement": min_agreement}, "passed": passed}


def self_check_entry(texts: list[str], reference: np.ndarray, candidate: np.ndarray, max_abs_diff: float) -> dict:
    """A few reference texts (confident, top-1 agreeing, one of them the longest) and their expected logits.

    Expected logits are the artifact's own on the export host; a device that deviates from them by more than the
    tolerance, or flips a top-1, runs a broken or incompatible backend.
    """
    agree = np.flatnonzero(reference.argmax(axis=1) == candidate.argmax(axis=1))
    top2 = np.sort(reference[agree], axis=1)[:, -2:]
    confident = agree[np.argsort(top2[:, 0] - top2[:, 1])][: SELF_CHECK_TEXTS - 1].tolist()
    longest = max(agree.tolist(), key=lambda i: len(texts[i]), default=None)
    chosen = list(dict.fromkeys(confident + ([longest] if longest is not None else [])))
    return {
        "texts": [texts[i] for i in chosen],
        "expected_logits": candidate[chosen].round(6).tolist(),
        "tolerance": max(FP32_TOLERANCE, SELF_CHECK_SLACK * max_abs_diff),
    }


def evaluate(bundle, examples: list[tuple[str, str]], batch_size: int = 32, threads: int | None = None) -> dict:
    """Accuracy and macro-F1 of a bundle on (text, label) pairs, run in its own runtime (no torch).

    Raises:
        EdgeftError: a label in `examples` that the bundle does not know.
    """
    from edgeft.errors import EdgeftError
    from edgeft.runtime import load

    predictor = load(bundle, threads=threads, self_check=False, trusted_keys=[])
    index = {label: i for i, label in enumerate(predictor.labels)}
    unknown = sorted({label for _, label in examples} - set(index))
    if unknown:
        raise EdgeftError(f"labels not in the bundle: {', '.join(unknown[:10])}")
    truth = np.array([index[label] for _, label in examples])
    predicted = predictor.logits([text for text, _ in examples], batch_size).argmax(axis=1)
    from edgeft.metrics import classification_metrics

    metrics = classification_metrics(truth, predicted, predictor.labels)
    return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "n": len(examples)}
