"""What an export starts from: a run folder (or a bare classifier folder) and its real texts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeft.errors import EdgeftError
from edgeft.models import CLASSIFIER_CONFIG

RECIPE_LOCK = "recipe.lock.yaml"
MERGED = "merged"
CALIBRATION_TEXTS = 300  # enough for NNCF's activation statistics on a sentence encoder, seconds to collect


@dataclass
class Source:
    """The classifier folder to export and, when it came from `edgeft tune`, its run folder and recipe."""

    model_dir: Path
    run_dir: Path | None

    @property
    def recipe(self) -> Path | None:
        recipe = self.run_dir / RECIPE_LOCK if self.run_dir else None
        return recipe if recipe and recipe.is_file() else None


def resolve(path: str | Path) -> Source:
    """Accept `runs/<name>`, `runs/<name>/merged`, or any folder saved by `SequenceClassifier.save` (or a
    causal-LM run's `merged/`, which holds `generation.json`).

    Raises:
        EdgeftError: the folder holds no classifier.
    """
    from edgeft.decoders import GENERATION_FILE

    path = Path(path).expanduser().resolve()
    for marker in (CLASSIFIER_CONFIG, GENERATION_FILE):
        if (path / MERGED / marker).is_file():
            return Source(path / MERGED, path)
    if (path / CLASSIFIER_CONFIG).is_file() or (path / GENERATION_FILE).is_file():
        run_dir = path.parent if (path.parent / RECIPE_LOCK).is_file() else None
        return Source(path, run_dir)
    raise EdgeftError(
        f"RUN_DIR: {path} is neither a run folder (with {MERGED}/{CLASSIFIER_CONFIG} or {MERGED}/{GENERATION_FILE}) "
        "nor a model folder"
    )


def run_examples(source: Source, count: int, seed: int = 0) -> tuple[list, list[str], str]:
    """Verification examples and calibration texts from the run's recipe, read by its task.

    Returns:
        (up to `count` of the task's examples (e.g. (text, label) pairs) sampled from the test split, topped up
        from train; up to CALIBRATION_TEXTS training texts for calibration; where the examples came from).

    Raises:
        EdgeftError: no recipe to take texts from.
    """
    from edgeft.tasks import get_task

    if source.recipe is None:
        raise EdgeftError(
            f"{source.model_dir}: no {RECIPE_LOCK} beside it to take real verification texts from; "
            "export a run folder, or pass texts= from Python"
        )
    recipe = read_lock(source.recipe)
    task = get_task(recipe.model.task)
    splits = task.load_splits(recipe.data, recipe.training.seed)
    # Test texts first; a small test split is topped up with training texts so verification sees `count` inputs.
    examples = _sample(task, splits.test, splits.labels, count, seed) if splits.test is not None else []
    from_test = len(examples)
    examples += _sample(task, splits.train, splits.labels, count - from_test, seed)
    calibration = [task.example_text(item)
                   for item in _sample(task, splits.train, splits.labels, CALIBRATION_TEXTS, seed + 1)]
    return examples, calibration, f"{from_test} test + {len(examples) - from_test} train texts of {source.recipe}"


def read_lock(path: Path):
    """The recipe in a run's `recipe.lock.yaml`, its data paths replaced by the absolute ones the run used."""
    import yaml

    from edgeft.recipe import validate_recipe

    lock = yaml.safe_load(path.read_text()) or {}
    raw = dict(lock.get("recipe") or {})
    data = dict(raw.get("data") or {})
    for key, entry in (lock.get("data_files") or {}).items():
        data[key] = entry["path"]
    return validate_recipe({**raw, "data": data}, source=str(path))


def _sample(task, split, labels: list[str], count: int, seed: int) -> list:
    # Files like BANKING77 are grouped by label: a seeded shuffle covers every label instead of the first few.
    order = np.random.default_rng(seed).permutation(len(split))[:count]
    return task.examples(split.select(order.tolist()), labels)
