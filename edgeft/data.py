"""Load a recipe's data: files or hub datasets, column mapping, row checks, label ids, stratified validation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeft.data_files import SUPPORTED, file_problem
from edgeft.errors import EdgeftError
from edgeft.recipe import DataSpec

FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
MAX_ROWS_REPORTED = 20
# A text this long is a broken file (an unclosed quote swallowing rows), not an input: max_length would cut it.
MAX_TEXT_CHARS = 100_000


@dataclass
class Splits:
    """Datasets with columns `text` and `label` (int id into `labels`); `test` may be None."""

    train: "datasets.Dataset"  # noqa: F821
    validation: "datasets.Dataset"  # noqa: F821
    test: "datasets.Dataset | None"  # noqa: F821
    labels: list[str]

    def items(self):
        return [(name, split) for name, split in vars(self).items() if name != "labels" and split is not None]


def load_splits(spec: DataSpec, seed: int = 42) -> Splits:
    """Read and check every split; all problems are reported at once.

    Raises:
        EdgeftError: missing file, unknown column, bad rows (by row number), or test labels unseen in train.
    """
    problems: list[str] = []
    raw = {"train": _read(spec.train, "train", spec, problems)}
    if isinstance(spec.validation, str):
        raw["validation"] = _read(spec.validation, "validation", spec, problems)
    if spec.test:
        raw["test"] = _read(spec.test, "test", spec, problems)
    if problems:
        raise EdgeftError(problems)

    labels = sorted({str(value) for value in raw["train"]["label"]}, key=_natural_key)
    if len(labels) < 2:
        problems.append(f"data.train: {spec.train}: only one label ({', '.join(labels)}); a classifier needs two or "
                        f"more (is data.label_column {spec.label_column or 'label'!r} the right column?)")
    _warn_shared_texts(raw)
    for name in ("validation", "test"):
        unseen = sorted({str(v) for v in raw[name]["label"]} - set(labels)) if name in raw else []
        if unseen:
            problems.append(f"data.{name}: labels not in train: {', '.join(unseen[:10])}")
    if problems:
        raise EdgeftError(problems)

    from datasets import ClassLabel

    feature = ClassLabel(names=labels)
    encoded = {
        name: split.map(lambda row: {"label": feature.str2int(str(row["label"]))}).cast_column("label", feature)
        for name, split in raw.items()
    }
    if "validation" not in encoded:
        try:
            parts = encoded["train"].train_test_split(
                test_size=spec.validation, stratify_by_column="label", seed=spec.held_out_seed(seed)
            )
        except ValueError as error:
            raise EdgeftError(f"data.validation: cannot hold out a stratified {spec.validation}: {error}") from None
        encoded["train"], encoded["validation"] = parts["train"], parts["test"]
    return Splits(encoded["train"], encoded["validation"], encoded.get("test"), labels)


def _read(source: str, split: str, spec: DataSpec, problems: list[str]):
    """One split as a Dataset with columns `text` and `label`, or None after appending problems."""
    from datasets import load_dataset

    field = f"data.{split}"
    path = Path(source).expanduser()
    kind = FORMATS.get(path.suffix.lower())
    if path.exists() and (not path.is_file() or kind is None):
        problems.append(f"{field}: {source}: not a {SUPPORTED} file")
        return None
    if (kind and not path.is_file()) or (not kind and source.startswith((".", "/", "~"))):
        problems.append(f"{field}: no such file: {source}")
        return None
    if not kind and _offline():
        problems.append(f"{field}: {source!r} is not a local {SUPPORTED} file, and the hub is offline")
        return None
    if kind in ("csv", "json") and (problem := file_problem(path, kind)):
        problems.append(f"{field}: {source}: {problem}")
        return None
    try:
        if kind == "csv":  # "NA", "null", "None" are labels or words here, not missing values
            dataset = load_dataset("csv", data_files=str(path), split="train", keep_default_na=False,
                                   na_values=[""])
        elif kind:
            dataset = load_dataset(kind, data_files=str(path), split="train")
        else:
            name, _, hub_split = source.partition(":")
            dataset = load_dataset(name, split=hub_split or split)
    except Exception as error:  # noqa: BLE001 - datasets raises many types for unreadable data
        cause = error.__cause__ or error  # DatasetGenerationError hides the parser's message
        problems.append(f"{field}: cannot read {source}: {type(cause).__name__}: {cause}")
        return None

    text_column, label_column = spec.text_column or "text", spec.label_column or "label"
    missing = [c for c in (text_column, label_column) if c not in dataset.column_names]
    if missing:
        for column in missing:
            kind = "text_column" if column == text_column else "label_column"
            problems.append(
                f"data.{kind}: no column {column!r} in {source}; columns are: {', '.join(dataset.column_names)}"
            )
        return None
    dataset = dataset.select_columns([text_column, label_column])
    if text_column != "text":
        dataset = dataset.rename_column(text_column, "text")
    if label_column != "label":
        dataset = dataset.rename_column(label_column, "label")

    bad = [
        f"{source}: row {index + 1}: {why}"
        for index, (text, label) in enumerate(zip(dataset["text"], dataset["label"]))
        if (why := _row_problem(text, label))
    ]
    if bad:
        problems.extend(bad[:MAX_ROWS_REPORTED])
        if len(bad) > MAX_ROWS_REPORTED:
            problems.append(f"{source}: ... and {len(bad) - MAX_ROWS_REPORTED} more bad rows")
        return None
    return dataset


def _warn_shared_texts(raw: dict) -> None:
    """Texts of validation/test also in train inflate their scores: counted and reported, not silently kept."""
    import warnings

    train = set(raw["train"]["text"])
    for name in ("validation", "test"):
        if name in raw:
            shared = [i for i, text in enumerate(raw[name]["text"]) if text in train]
            if shared:
                warnings.warn(f"data.{name}: {len(shared)} of {len(raw[name])} rows also in train (first: row "
                              f"{shared[0] + 1}); their scores are not held out", UserWarning, stacklevel=3)


def _offline() -> bool:
    import os

    return any(os.environ.get(name, "").lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _row_problem(text, label) -> str | None:
    if not isinstance(text, str) or not text.strip():
        return f"empty or non-text value in the text column ({text!r})"
    if len(text) > MAX_TEXT_CHARS:
        return (f"a text of {len(text):,} characters (over {MAX_TEXT_CHARS:,}: an unclosed quote merging rows?)")
    if label is None or (isinstance(label, str) and not label.strip()):
        return "empty label"
    return None


def _natural_key(label: str):
    """Numeric labels sort as numbers ("2" before "10"), names alphabetically."""
    return (0, int(label), "") if label.lstrip("-").isdigit() else (1, 0, label)


def summarize(splits: Splits, tokenizer, max_length: int, task) -> dict:
    """Rows per split, label count and token-length percentiles of the task's texts, for `--dry-run`."""
    summary = {"labels": len(splits.labels), "splits": {}}
    for name, split in splits.items():
        texts = [task.example_text(example) for example in task.examples(split, splits.labels)]
        lengths = np.array([len(ids) for ids in tokenizer(texts)["input_ids"]])
        summary["splits"][name] = {
            "rows": len(split),
            "tokens_p50": int(np.percentile(lengths, 50)),
            "tokens_p90": int(np.percentile(lengths, 90)),
            "tokens_p99": int(np.percentile(lengths, 99)),
            "tokens_max": int(lengths.max()),
            "truncated_fraction": round(float((lengths > max_length).mean()), 4),
        }
    return summary
