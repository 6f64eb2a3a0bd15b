"""What a run folder holds for people and for reproduction: lock file, plots and a model card."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import yaml

from edgeft.recipe import Recipe
from edgeft.runtime.bundle import sha256

LOCKED_PACKAGES = ("edgeft", "torch", "transformers", "peft", "accelerate", "datasets", "tokenizers")


def package_versions(names=LOCKED_PACKAGES) -> dict[str, str | None]:
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def write_lock(path: Path, recipe: Recipe, recipe_hash: str, model_source) -> None:
    """The resolved recipe plus what is needed to reproduce it: versions, model source, data hashes."""
    data_files = {
        key: {"path": str(Path(value).resolve()), "sha256": sha256(Path(value))}
        for key, value in recipe.data.model_dump().items()
        if key in ("train", "validation", "test") and isinstance(value, str) and Path(value).is_file()
    }
    lock = {
        "recipe": recipe.model_dump(mode="json"),
        "recipe_sha256": recipe_hash,
        "model_source": str(model_source),
        "data_files": data_files,
        "python": platform.python_version(),
        "packages": package_versions(),
    }
    path.write_text(yaml.safe_dump(lock, sort_keys=False))


def plot_curves(log_history: list[dict], path: Path, metric: str = "accuracy") -> None:
    """Training loss per logging step and the validation metric per evaluation, against epochs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["epoch"], r["loss"]) for r in log_history if "loss" in r]
    evals = [(r["epoch"], r[f"eval_{metric}"]) for r in log_history if f"eval_{metric}" in r]
    figure, loss_axis = plt.subplots(figsize=(7, 4))
    if train:
        loss_axis.plot(*zip(*train), color="tab:blue", label="train loss")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("train loss", color="tab:blue")
    accuracy_axis = loss_axis.twinx()
    if evals:
        accuracy_axis.plot(*zip(*evals), "o-", color="tab:orange", label=f"validation {metric}")
    accuracy_axis.set_ylabel(f"validation {metric}", color="tab:orange")
    figure.suptitle("Training curves")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_confusion(y_true, y_pred, labels: list[str], path: Path, split: str) -> None:
    """Row-normalised confusion matrix (recall per true class on the diagonal)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(y_true, y_pred, labels=list(range(len(labels))), normalize="true")
    size = max(5.0, 0.14 * len(labels) + 3)
    figure, axis = plt.subplots(figsize=(size, size))
    image = axis.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(labels))
    font = 9 if len(labels) <= 20 else 4
    axis.set_xticks(ticks, labels, rotation=90, fontsize=font)
    axis.set_yticks(ticks, labels, fontsize=font)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"Confusion matrix ({split}, row-normalised)")
    figure.colorbar(image, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_model_card(path: Path, recipe: Recipe, metrics: dict, model_source, table: list[str],
                     figures: list[str], run_dir: Path, loader: str) -> None:
    """A short model card: what was tuned how, on what, with which results (the task's `table` and `figures`);
    `run_dir` is where the run folder will be, `loader` the call that loads its `merged/` model."""
    merge = metrics["merge"]
    merge_line = (
        f"merged/ reproduces the tuned logits to {merge['max_abs_diff']:.2e} on {merge['rows']} rows."
        if merge.get("supported")
        else f"No merged/ model: {merge['reason']}."
    )
    text = f"""# {recipe.name}

`{recipe.model.task}` model tuned by edgeft from `{recipe.model.name}` ({model_source}) with `{recipe.method.kind}`.

{f"- Labels: {len(metrics['labels'])} (id order in `metrics.json`){chr(10)}" if metrics['labels'] else ""}- Trainable parameters: {metrics['params']['trainable']:,} of {metrics['params']['total']:,}
- Training: {metrics['train']['steps']} steps, {metrics['train']['seconds']} s on {metrics['train']['device']}
- {merge_line}

{chr(10).join(table)}

Use: `edgeft export {run_dir} --format onnx`, or load `merged/` with `{loader}`.
The exact recipe, package versions and data hashes are in `recipe.lock.yaml`.
![curves](curves.png)
""" + "".join(f"![{Path(name).stem}]({name})\n" for name in figures)
    path.write_text(text)
