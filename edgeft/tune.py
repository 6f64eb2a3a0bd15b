"""`edgeft tune`: fine-tune a model for its task from a recipe with transformers' Trainer + peft, evaluate, merge.

Everything is written into `.<name>.partial/` beside the output folder and renamed into place at the end, so a
failed run never leaves a half run folder; `resume=True` continues from the last checkpoint in that folder.
Runs data-parallel unchanged under `torchrun` or `accelerate launch` (only rank 0 writes the run folder).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

import datasets
import numpy as np
import torch

from edgeft import run_report
from edgeft.atomic import last_checkpoint, promote
from edgeft.console import third_party_to
from edgeft.data import summarize
from edgeft.errors import EdgeftError
from edgeft.methods import MERGEABLE, apply_method
from edgeft.models import (
    EncoderClassifier,
    HeadConfig,
    count_parameters,
    default_pooling,
    load_classifier,
    load_encoder,
    load_tokenizer,
    max_positions,
    resolve_model,
)
from edgeft.recipe import Recipe, dump_recipe
from edgeft.tasks import get_task

MERGE_TOLERANCE = 1e-3
MERGE_CHECK_ROWS = 256


def dry_run(recipe: Recipe) -> dict:
    """The resolved recipe and a data summary, without training."""
    task = get_task(recipe.model.task)
    if hasattr(task, "summarize"):  # a generating task: lengths of the formatted prompt + completion sequences
        return {"recipe": dump_recipe(recipe), "data": task.summarize(recipe)}
    splits = task.load_splits(recipe.data, recipe.training.seed)
    tokenizer = load_tokenizer(resolve_model(recipe.model.name))
    return {"recipe": dump_recipe(recipe), "data": summarize(splits, tokenizer, recipe.data.max_length, task)}


def tune(recipe: Recipe, output: Path | None = None, resume: bool = False, overwrite: bool = False) -> Path:
    """Fine-tune, evaluate and merge; returns the run folder.

    Args:
        recipe: the validated recipe.
        output: run folder (default: the recipe's `output`, else `runs/<name>`).
        resume: continue from the last checkpoint of an interrupted run of the same recipe.
        overwrite: replace an existing run folder (it is only removed once the new one is complete).

    Raises:
        EdgeftError: an existing output without `overwrite`, nothing to resume, or a failed merge check.
    """
    output = Path(output or recipe.output_dir)
    partial = output.parent / f".{output.name}.partial"
    recipe_hash = hashlib.sha256(dump_recipe(recipe).encode()).hexdigest()
    leader = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 touches the run folder
    if leader and output.exists() and not overwrite:
        raise EdgeftError(f"{output} already exists; pass --overwrite to replace it or --output to choose another")
    datasets.disable_progress_bars()

    # Everything a user can get wrong is checked before the run folder is touched.
    torch.manual_seed(recipe.training.seed)
    task = get_task(recipe.model.task)
    generating = hasattr(task, "tune")  # a generating task tunes and scores the whole LM itself (tasks/causal_lm.py)
    if not generating:
        source = resolve_model(recipe.model.name)
        positions = max_positions(source)
        if positions and recipe.data.max_length > positions:
            raise EdgeftError(f"data.max_length: {recipe.data.max_length} is above the {positions} positions of "
                              f"model.name {recipe.model.name!r}")
        splits = task.load_splits(recipe.data, recipe.training.seed)
    lock = _lock(output) if leader else None  # noqa: F841 - held until this process ends, even when killed
    if leader:
        _prepare(partial, recipe_hash, resume)
    with _third_party_log(partial, leader) as terminal:
        if generating:
            metrics, log_history, source = task.tune(recipe, partial, resume, progress=terminal)
            evaluated = None
        else:
            metrics, log_history, evaluated = _tune_classifier(recipe, task, source, splits, partial, resume, terminal)
    if metrics is not None:  # rank 0
        _write_outputs(partial, output, recipe, recipe_hash, metrics, log_history, evaluated, source, task)
        _commit(partial, output)
    return output


def _tune_classifier(recipe: Recipe, task, source: str, splits, partial: Path, resume: bool, terminal):
    """Train, evaluate and merge an encoder with a task head; (metrics, log history, logits per split), or
    (None, None, None) on ranks other than 0."""
    from edgeft.training import build_trainer, predict_logits, train

    tokenizer = load_tokenizer(source)
    pooling = default_pooling(source) if recipe.model.pooling == "auto" else recipe.model.pooling
    head_config = HeadConfig(
        labels=splits.labels,
        task=task.name,
        pooling=pooling,
        normalize=recipe.model.normalize,
        scale=recipe.model.logit_scale,
        max_length=recipe.data.max_length,
    )
    encoder = apply_method(load_encoder(source, vocab_size=len(tokenizer)), recipe.method)
    model = task.build_model(encoder, head_config)
    if recipe.method.adapter is not None:
        model.load_head(Path(recipe.method.adapter))
    params = count_parameters(model)

    tokenized = {name: task.tokenize(split, tokenizer, recipe.data.max_length) for name, split in splits.items()}
    trainer = build_trainer(model, recipe.training, tokenizer, tokenized, partial, progress=terminal)
    _, train_record = train(trainer, partial, resume)

    # Every rank takes part in evaluation (the Trainer gathers across processes); rank 0 writes.
    evaluated = {name: predict_logits(trainer, tokenized[name]) for name in ("validation", "test") if name in tokenized}
    if not trainer.is_world_process_zero():
        return None, None, None

    metrics = {
        name: task.split_metrics(logits, labels, tokenized[name], splits.labels)
        for name, (logits, labels) in evaluated.items()
    }
    metrics.update(
        task=task.name,
        labels=splits.labels,
        params=params,
        method=recipe.method.kind,
        train=train_record,
    )
    check_split = tokenized.get("test") or tokenized["validation"]
    metrics["merge"] = _save_model(model, recipe, tokenizer, check_split, partial)
    return metrics, trainer.state.log_history, evaluated


@contextmanager
def _third_party_log(partial: Path, leader: bool):
    """Third-party output (torchao's load failures, warnings) into the run's `tune.log`; yields the stream for
    edgeft's own progress. Ranks other than 0 keep their streams: the leader may still be preparing the folder."""
    if not leader:
        yield sys.stderr
        return
    with third_party_to(partial / "tune.log") as terminal:
        yield terminal


def _lock(output: Path):
    """An exclusive lock on `output` for this process (the kernel drops it when the process ends, even on
    SIGKILL, so `--resume` is never blocked by a dead run). A second run into the same folder is refused:
    even with --overwrite, two runs writing one staging folder would corrupt each other."""
    import fcntl

    output.parent.mkdir(parents=True, exist_ok=True)
    handle = open(output.parent / f".{output.name}.lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise EdgeftError(f"{output} is being written by another edgeft tune ({owner}); wait for it to finish, or "
                          "pass --output to write elsewhere") from None
    handle.truncate(0)
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle


def _prepare(partial: Path, recipe_hash: str, resume: bool) -> None:
    stamp = partial / "recipe.sha256"
    if resume:
        if last_checkpoint(partial) is None:
            raise EdgeftError(f"nothing to resume: no checkpoint in {partial}")
        if stamp.read_text() != recipe_hash:
            raise EdgeftError(f"cannot resume: the recipe changed since {partial} was started")
        return
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    stamp.write_text(recipe_hash)


def _save_model(model: EncoderClassifier, recipe: Recipe, tokenizer, check_split, folder: Path) -> dict:
    """Save adapter/ and merged/, and check the reloaded merged model reproduces the tuned logits."""
    from edgeft.training import model_logits

    model.eval()
    kind = recipe.method.kind
    rows = check_split.select(range(min(MERGE_CHECK_ROWS, len(check_split))))
    tuned_logits = model_logits(model, rows, tokenizer)
    if kind != "full":
        adapter = folder / "adapter"
        if kind != "head-only":
            model.encoder.save_pretrained(adapter)
        model.save_head(adapter, tokenizer)
    if kind not in MERGEABLE | {"full", "head-only"}:
        return {"supported": False, "reason": f"{kind} trains virtual tokens, which cannot be merged into weights"}
    if kind in MERGEABLE:
        model.encoder = model.encoder.merge_and_unload()
    model.save(folder / "merged", tokenizer)
    merged_logits = model_logits(load_classifier(folder / "merged"), rows, tokenizer)
    diff = float(np.abs(tuned_logits - merged_logits).max())
    if diff > MERGE_TOLERANCE:
        raise EdgeftError(f"merge check failed: merged logits differ by {diff:.2e} (> {MERGE_TOLERANCE})", 1)
    return {"supported": True, "max_abs_diff": diff, "rows": len(rows), "tolerance": MERGE_TOLERANCE}


def _write_outputs(folder, output, recipe, recipe_hash, metrics, log_history, evaluated, source, task) -> None:
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    run_report.write_lock(folder / "recipe.lock.yaml", recipe, recipe_hash, source)
    run_report.plot_curves(log_history, folder / "curves.png", getattr(task, "checkpoint_metric", task.metric))
    figures = []
    if evaluated:  # a generating task has no logits per example to draw
        split = "test" if "test" in evaluated else "validation"
        logits, labels = evaluated[split]
        figures = task.write_figures(folder, logits, labels, metrics["labels"], split)
    run_report.write_model_card(folder / "README.md", recipe, metrics, source, task.card_table(metrics), figures,
                                output, task.merged_loader)


def _commit(partial: Path, output: Path) -> None:
    """Drop checkpoints and move the finished run into place."""
    shutil.rmtree(partial / "checkpoints", ignore_errors=True)
    (partial / "recipe.sha256").unlink()
    promote(partial, output)
