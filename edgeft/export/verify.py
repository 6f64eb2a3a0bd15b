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
    """The reference: the PyTorch model's prediction rows (its task's: per text, or per real token) on
    transformers' tokenization, padded to each batch's longest."""
    import torch

    from edgeft.tasks import get_task

    rows_of = get_task(model.head_config.task).runtime.rows
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
            logits = model(batch["input_ids"], batch["attention_mask"]).float().numpy()
            chunks.append(rows_of(logits, batch["attention_mask"].numpy()))
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


def self_check_entry(texts: list[str], reference: np.ndarray, candidate: np.ndarray, max_abs_diff: float,
                     row_counts: list[int] | None = None) -> dict:
    """A few reference texts (confident, top-1 agreeing, one of them the longest) and their expected logits.

    Expected logits are the artifact's own on the export host; a device that deviates from them by more than the
    tolerance, or flips a top-1, runs a broken or incompatible backend. `row_counts` gives each text's number of
    prediction rows (default one: a sentence classifier); a text counts as agreeing and confident by its worst row.
    """
    counts = row_counts or [1] * len(texts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int)
    top2 = np.sort(reference, axis=1)[:, -2:]
    agrees = reference.argmax(axis=1) == candidate.argmax(axis=1)
    agree = np.array([i for i, (start, count) in enumerate(zip(starts, counts)) if agrees[start:start + count].all()])
    margin = np.array([(top2[start:start + count, 1] - top2[start:start + count, 0]).min()
                       for start, count in zip(starts[agree], np.asarray(counts)[agree])]) if len(agree) else agree
    confident = agree[np.argsort(-margin)][: SELF_CHECK_TEXTS - 1].tolist()
    longest = max(agree.tolist(), key=lambda i: len(texts[i]), default=None)
    chosen = list(dict.fromkeys(confident + ([longest] if longest is not None else [])))
    rows = [row for i in chosen for row in range(starts[i], starts[i] + counts[i])]
    return {
        "texts": [texts[i] for i in chosen],
        "expected_logits": candidate[rows].round(6).tolist(),
        "tolerance": max(FP32_TOLERANCE, SELF_CHECK_SLACK * max_abs_diff),
    }


def evaluate(bundle, examples: list, threads: int | None = None) -> dict:
    """Quality of a bundle on its task's examples (e.g. (text, label) pairs), run in its own runtime (no torch).

    Raises:
        EdgeftError: examples the bundle cannot score (e.g. a label it does not know).
    """
    from edgeft.runtime import load
    from edgeft.tasks import get_task

    predictor = load(bundle, threads=threads, self_check=False, trusted_keys=[])
    return get_task(predictor.manifest.get("task")).evaluate_predictor(predictor, examples)
