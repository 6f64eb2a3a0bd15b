"""Trainer glue shared by `tune` and `compress`'s distillation: tokenizing, the Trainer, progress and logs."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from transformers import (
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from edgeft.console import is_terminal
from edgeft.errors import EdgeftError
from edgeft.recipe import TrainingSpec

EVAL_BATCH_SIZE = 64


def tokenize(split, tokenizer, max_length: int):
    """Token ids per row, truncated but not padded (the collator pads each batch to its longest row)."""
    return split.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_length),
        batched=True,
        remove_columns=["text"],
    )


class ClassifierTrainer(Trainer):
    """A Trainer whose new head may learn at its own (higher) learning rate than the tuned encoder weights."""

    def __init__(self, *args, head_learning_rate: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.head_learning_rate = head_learning_rate

    def create_optimizer(self):
        if self.optimizer is None:
            head = {id(p) for p in self.model.head.parameters()}
            trainable = [p for p in self.model.parameters() if p.requires_grad]
            groups = [
                {"params": [p for p in trainable if id(p) not in head]},
                {"params": [p for p in trainable if id(p) in head],
                 "lr": self.head_learning_rate or self.args.learning_rate},
            ]
            groups = [group for group in groups if group["params"]]
            self.optimizer = torch.optim.AdamW(
                groups, lr=self.args.learning_rate, weight_decay=self.args.weight_decay
            )
        return self.optimizer


    def _save(self, output_dir=None, state_dict=None):
        # The classifier is a plain nn.Module; peft's prompt-learning wrappers alias the word embeddings, which
        # `safetensors.save_file` (the Trainer's default here) rejects and `save_model` de-duplicates.
        from safetensors.torch import save_model

        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        save_model(self.model, os.path.join(output_dir, "model.safetensors"))


class TrainProgress(TrainerCallback):
    """Training progress on `stream` (default: stderr): a rich bar with the latest loss on a terminal, a plain line
    per logged step otherwise (nohup, CI), so a long run never stays silent between evaluations."""

    def __init__(self, metric: str = "accuracy", stream=None):
        self.metric, self.stream = metric, stream
        self.progress = None
        self.train_task = self.eval_task = None
        self.started = self.first_step = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.stream = self.stream or sys.stderr
        self.started, self.first_step = time.time(), state.global_step
        if is_terminal(self.stream):
            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                console=Console(file=self.stream),
            )
            self.progress.start()
            self.train_task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress:
            self.progress.update(self.train_task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not (state.is_world_process_zero and logs and "loss" in logs):
            return
        if self.progress:
            self.progress.update(self.train_task, description=f"train loss {logs['loss']:.3f}")
            return
        done = state.global_step - self.first_step
        per_step = (time.time() - self.started) / max(done, 1)
        left = (state.max_steps - state.global_step) * per_step / 60
        self._print(f"step {state.global_step}/{state.max_steps}: train loss {logs['loss']:.4f}, "
                    f"{per_step:.1f} s/step, about {left:.0f} min left")

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if not self.progress:
            return
        if self.eval_task is None:
            self.eval_task = self.progress.add_task("evaluate", total=len(eval_dataloader))
        self.progress.advance(self.eval_task)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.progress and self.eval_task is not None:
            self.progress.remove_task(self.eval_task)
            self.eval_task = None
        if state.is_world_process_zero and metrics and f"eval_{self.metric}" in metrics:
            self._print(f"epoch {state.epoch:.2f}: validation {self.metric} {metrics[f'eval_{self.metric}']:.4f}")

    def on_predict(self, args, state, control, metrics=None, **kwargs):
        if self.progress and self.eval_task is not None:
            self.progress.remove_task(self.eval_task)
            self.eval_task = None

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress:
            self.progress.stop()
            self.progress = None

    def _print(self, line: str) -> None:
        if self.progress:
            self.progress.console.print(line)
        elif self.stream:
            print(line, file=self.stream, flush=True)


class JsonlLog(TrainerCallback):
    """Append every Trainer log record to `train_log.jsonl` (appends, so a resumed run keeps its history)."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            with self.path.open("a") as log:
                log.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n")


class StopOnNonFinite(TrainerCallback):
    """Fail the run once a gradient norm or loss is no longer finite: the Trainer would log a NaN training loss as 0.0
    and go on to save a useless adapter."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("grad_norm", "loss", "eval_loss"):
            value = (logs or {}).get(key)
            if isinstance(value, float) and not math.isfinite(value):
                raise EdgeftError(f"training diverged: {key} is {value} at step {state.global_step} (try "
                                  "training.precision: fp32 or a lower training.learning_rate)", 1)


def bf16_training(precision: str) -> bool:
    """Whether the recipe's `training.precision` trains in bfloat16 mixed precision on this machine: `auto` on a
    GPU with bfloat16, `bf16` there or on a CPU with native bfloat16 arithmetic (AVX512-BF16, AMX; oneDNN)."""
    gpu = torch.cuda.is_available()
    available = torch.cuda.is_bf16_supported() if gpu else cpu_has_bf16()
    if precision == "bf16" and not available:
        raise EdgeftError("training.precision: bf16 needs a GPU or CPU with bfloat16 arithmetic here (this one "
                          "would emulate it, slower than fp32); use auto or fp32")
    return available and (precision == "bf16" or (precision == "auto" and gpu))


def cpu_has_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def build_trainer(model, training: TrainingSpec, tokenizer, tokenized: dict, folder: Path, trainer_class=None,
                  task=None, progress=None, **extra):
    """A Trainer that evaluates every epoch (or `eval_steps`), keeps the best checkpoint and stops early.

    Progress goes to the `progress` stream (default: stderr when training starts).

    The task (default: the model's, `model.head_config.task`) gives the batch collator and the validation metric
    it chooses on: the recipe's `training.checkpoint_metric`, else the task's `checkpoint_metric` when it has one
    (`loss`: lower is better), else its `metric`.
    """
    from edgeft.tasks import get_task

    task = task or get_task(model.head_config.task)
    labels = model.head_config.labels if hasattr(model, "head_config") else []
    choose_on = training.checkpoint_metric or getattr(task, "checkpoint_metric", task.metric)
    compute_metrics = task.compute_metrics(labels)
    per_steps = training.eval_steps is not None
    use_bf16 = bf16_training(training.precision)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1  # under torchrun / accelerate launch
    args = TrainingArguments(
        output_dir=str(folder / "checkpoints"),
        per_device_train_batch_size=training.batch_size,
        per_device_eval_batch_size=EVAL_BATCH_SIZE,
        learning_rate=training.learning_rate,
        num_train_epochs=training.epochs,
        max_steps=training.max_steps or -1,
        warmup_ratio=training.warmup_ratio,
        weight_decay=training.weight_decay,
        label_smoothing_factor=training.label_smoothing,
        neftune_noise_alpha=training.neftune_alpha,
        lr_scheduler_type="linear",
        eval_strategy="steps" if per_steps else "epoch",
        save_strategy="steps" if per_steps else "epoch",
        eval_steps=training.eval_steps,
        save_steps=training.eval_steps,
        logging_steps=10,
        # The best checkpoint plus the last ones: as many as the average needs.
        save_total_limit=max(2, training.average_checkpoints + 1),
        load_best_model_at_end=True,
        metric_for_best_model=choose_on,
        greater_is_better=choose_on != "loss",
        # Without metrics to compute, evaluation only needs the loss (a causal LM's logits would fill the memory).
        prediction_loss_only=compute_metrics is None,
        seed=training.seed,
        data_seed=training.seed,
        bf16=use_bf16,
        use_cpu=use_bf16 and not torch.cuda.is_available(),  # the Trainer's CPU autocast asks for it
        report_to=[],
        disable_tqdm=True,
        save_safetensors=True,
        ddp_backend="gloo" if distributed and not torch.cuda.is_available() else None,
        group_by_length=training.group_by_length,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    callbacks = [TrainProgress(choose_on, progress), JsonlLog(folder / "train_log.jsonl"), StopOnNonFinite()]
    if training.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=training.early_stopping_patience))
    trainer = (trainer_class or ClassifierTrainer)(
        model=model,
        args=args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        data_collator=task.collator(tokenizer),
        compute_metrics=compute_metrics,
        callbacks=callbacks,
        head_learning_rate=training.head_learning_rate,
        **extra,
    )
    trainer.remove_callback(PrinterCallback)  # TrainProgress and train_log.jsonl replace the raw dict prints
    return trainer


def train(trainer, folder: Path, resume: bool) -> tuple[object, dict]:
    """Run training (`resume`: from the last complete checkpoint under `folder`); the Trainer's result and the
    `train` record of metrics.json. Time and speed cover the steps this process ran: on a resumed run the Trainer's
    own samples/s divides the whole run's rows by this process's time."""
    from edgeft.atomic import last_checkpoint

    checkpoint = last_checkpoint(folder) if resume else None
    first = int(Path(checkpoint).name.split("-")[-1]) if checkpoint else 0
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - started
    # Mixed precision left the model's forward wrapped in autocast: later checks (the merge) compare in float32.
    trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    rows = (result.global_step - first) * trainer.args.per_device_train_batch_size * trainer.args.world_size
    return result, {
        "seconds": round(seconds, 1),
        "steps": result.global_step,
        "resumed_from_step": first,
        "samples_per_second": round(rows / seconds, 3) if seconds else None,
        "epochs": trainer.state.epoch,
        "precision": "bf16" if trainer.args.bf16 else "fp32",
        "best_checkpoint": Path(trainer.state.best_model_checkpoint or "").name or None,
        "device": str(trainer.args.device),
    }


def average_last_checkpoints(model, folder: Path, count: int) -> list[str]:
    """Give `model` the mean weights of the last `count` complete checkpoints under `folder/checkpoints`; their
    names."""
    from edgeft.atomic import complete_checkpoints

    chosen = complete_checkpoints(folder)[-count:]
    if len(chosen) < count:
        raise EdgeftError(f"training.average_checkpoints: {count} checkpoints asked for, the run saved {len(chosen)} "
                          "(lower it, or evaluate more often: training.eval_steps)")
    average_weights(model, chosen)
    return [path.name for path in chosen]


def average_weights(model, folders: list[Path]) -> None:
    """Give `model` (a peft LoRA model, or a plain one tuned in full) the mean of the weights saved in `folders`
    (checkpoints, or adapters of trainings from the same base). LoRA adapters combine exactly by concatenation (peft's
    `cat`: A stacked with each adapter's weight and scaling folded in, B side by side), under the adapter's own
    name."""
    from safetensors.torch import load_file

    count = len(folders)
    if hasattr(model, "add_weighted_adapter"):
        active = model.active_adapter
        names = [f"average_{index}" for index in range(count)]
        for name, path in zip(names, folders):
            model.load_adapter(str(path), adapter_name=name)
        model.set_adapter(names[0])
        model.delete_adapter(active)
        model.add_weighted_adapter(names, [1 / count] * count, active, combination_type="cat")
        model.set_adapter(active)
        for name in names:
            model.delete_adapter(name)
    else:
        states = [load_file(path / "model.safetensors") for path in folders]
        averaged = {key: sum(state[key].float() for state in states) / count for key in states[0]}
        # Tied weights are saved once, so some keys may be missing; a key the model lacks means a foreign file.
        unexpected = model.load_state_dict({key: value.to(states[0][key].dtype) for key, value in averaged.items()},
                                           strict=False).unexpected_keys
        if unexpected:
            raise EdgeftError(f"{folders[0]}: weights the model does not have ({', '.join(unexpected[:3])})", 1)


def predict_logits(trainer: Trainer, dataset) -> tuple[np.ndarray, np.ndarray]:
    """Logits and label ids for a tokenized split, through the Trainer (gathered across processes)."""
    # Rows must come back in dataset order (callers score them against the split): no length grouping here.
    grouped, trainer.args.group_by_length = trainer.args.group_by_length, False
    try:
        output = trainer.predict(dataset)
    finally:
        trainer.args.group_by_length = grouped
    return output.predictions, output.label_ids


@torch.inference_mode()
def model_logits(model, dataset, tokenizer, batch_size: int = EVAL_BATCH_SIZE, per_example: bool = False):
    """The task's prediction rows (one per text, or one per real token) of a model on a tokenized split, in this
    process only (for checks and distillation targets); with `per_example`, a list of each example's rows (a
    vector per text, a tokens x labels matrix per tagged text), e.g. to store as a column."""
    from edgeft.tasks import get_task

    device = get_task(model.head_config.task).runtime
    rows_of = device.example_rows if per_example else device.rows
    collator = DataCollatorWithPadding(tokenizer)
    columns = [c for c in dataset.column_names if c in ("input_ids", "attention_mask", "token_type_ids")]
    rows = dataset.select_columns(columns)
    model.eval()
    chunks = []
    for start in range(0, len(rows), batch_size):
        batch = collator([rows[i] for i in range(start, min(start + batch_size, len(rows)))])
        chunks.append(rows_of(model(**batch).float().numpy(), batch["attention_mask"].numpy()))
    return [row for chunk in chunks for row in chunk] if per_example else np.concatenate(chunks)
