"""Knowledge distillation: a pruned student recovers accuracy from the tuned teacher, on the training data.

Loss = the task's `distill_loss` (alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, labels))
       + hidden_weight * MSE(student layer states, teacher layer states)   (only when the widths match)
(Hinton et al. 2015; the T^2 keeps the soft-label gradients' scale independent of T. The hidden-state term is
TinyBERT's, on the real tokens of each student layer and the teacher layer it came from.)

It runs through `edgeft.training.build_trainer`, the same Trainer as `tune` (progress, logs, best checkpoint on
validation accuracy, DDP). The teacher's logits are computed once and ride along as a dataset column, so training
needs no teacher forward pass unless the hidden-state term is on.

A vocabulary-pruned student tokenizes differently from its teacher; the teacher then reads the student's pieces
mapped back to its own ids (the student's vocabulary is a subset of the teacher's), so both see the same positions.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from edgeft.errors import EdgeftError
from edgeft.models import SequenceClassifier
from edgeft.recipe import Strict, TrainingSpec

TEACHER_LOGITS = "teacher_logits"


class DistillConfig(Strict):
    epochs: PositiveFloat = 1
    """Passes over the training data."""
    learning_rate: PositiveFloat = 5.0e-5
    """Peak learning rate for every student weight (a full fine-tune of the small model)."""
    temperature: PositiveFloat = 2.0
    """Softmax temperature for both models' logits; higher passes on more of the teacher's dark knowledge."""
    alpha: float = Field(0.7, ge=0.0, le=1.0)
    """Weight of the soft-label KL term; the hard-label cross-entropy gets 1 - alpha."""
    hidden_weight: NonNegativeFloat = 0.0
    """Weight of the per-layer hidden-state MSE (needs the same hidden size; costs a teacher forward per step)."""
    batch_size: PositiveInt = 32
    """Examples per step per device."""
    max_steps: PositiveInt | None = None
    """Hard cap on optimizer steps (overrides epochs); for smoke tests."""
    seed: int = 42
    """Seed for shuffling."""


class Space(Strict):
    """What the search tries: distillation epochs; a student that no earlier pass changed is not distilled."""

    epochs: list[PositiveFloat] = Field([2, 3], min_length=1)
    """Choices for passes over the training data."""
    settings: DistillConfig = DistillConfig(learning_rate=1e-4)
    """Every other distillation setting (its `epochs` is replaced by the sampled one)."""

    def sample(self, trial, earlier: dict, profile) -> DistillConfig | None:
        if earlier.get("prune") is None:  # vocabulary pruning alone keeps the logits: nothing to recover
            return None
        return self.settings.model_copy(update={"epochs": trial.suggest_categorical("distill.epochs", self.epochs)})


Config = DistillConfig
COSTLY = True  # minutes per epoch: the search scores the student first and distills only promising ones


def run(model_dir: Path, config: DistillConfig, out_dir: Path, context) -> Path:
    """The pass: distill the student in `model_dir` from the tuned teacher (`context.teacher_dir`)."""
    import tempfile

    from edgeft.models import load_classifier, load_tokenizer

    student, tokenizer = load_classifier(model_dir), load_tokenizer(model_dir)
    teacher = load_classifier(context.teacher_dir)
    with tempfile.TemporaryDirectory(prefix="edgeft-distill-") as checkpoints:
        trained = distill(student, teacher, config, context.splits, tokenizer, Path(checkpoints),
                          teacher_tokenizer=load_tokenizer(context.teacher_dir))
    trained.save(out_dir, tokenizer)
    return out_dir


def distill(
    student: SequenceClassifier,
    teacher: SequenceClassifier,
    config: DistillConfig,
    splits,
    tokenizer,
    folder: Path,
    teacher_tokenizer=None,
) -> SequenceClassifier:
    """Train `student` (in place) to match `teacher`; returns it in eval mode with the best validation checkpoint.

    Args:
        student: the classifier to train (e.g. a pruned copy of the teacher); same labels as the teacher.
        teacher: the tuned classifier; frozen.
        config: loss mix and optimisation settings.
        splits: `edgeft.data.Splits` (raw `text`/`label` datasets); train and validation are used.
        tokenizer: the student's tokenizer.
        folder: where the Trainer keeps checkpoints and `train_log.jsonl`.
        teacher_tokenizer: the teacher's, when it differs (a vocabulary-pruned student).

    Raises:
        EdgeftError: different labels, a hidden-state loss between different widths, or a student vocabulary that
            is not part of the teacher's.
    """
    from edgeft.tasks import get_task
    from edgeft.training import build_trainer, model_logits

    if student.head_config.labels != teacher.head_config.labels:
        raise EdgeftError("distill: the student and the teacher must predict the same labels")
    widths = (student.encoder.config.hidden_size, teacher.encoder.config.hidden_size)
    if config.hidden_weight and widths[0] != widths[1]:
        raise EdgeftError(f"distill.hidden_weight: needs equal hidden sizes (student {widths[0]}, teacher {widths[1]})")
    teacher = teacher.eval().requires_grad_(False)
    id_map = _teacher_ids(tokenizer, teacher_tokenizer)
    max_length = student.head_config.max_length
    tokenized = {}
    for name in ("train", "validation"):
        split = get_task(student.head_config.task).tokenize(getattr(splits, name), tokenizer, max_length)
        seen = split if id_map is None else split.map(lambda row: {"input_ids": id_map[row["input_ids"]].tolist()})
        logits = model_logits(teacher, seen, teacher_tokenizer or tokenizer, per_example=True)
        tokenized[name] = split.add_column(TEACHER_LOGITS, [row.tolist() for row in logits])

    training = TrainingSpec(
        learning_rate=config.learning_rate,
        head_learning_rate=None,
        batch_size=config.batch_size,
        epochs=config.epochs,
        max_steps=config.max_steps,
        seed=config.seed,
        early_stopping_patience=None,
    )
    trainer = build_trainer(
        student, training, tokenizer, tokenized, Path(folder), trainer_class=distill_trainer_class(),
        teacher=teacher, distill_config=config, teacher_ids=id_map,
    )
    trainer.train()
    return student.eval()


def _teacher_ids(tokenizer, teacher_tokenizer) -> torch.Tensor | None:
    """Student id -> teacher id for the same token string, or None when both use one vocabulary."""
    if teacher_tokenizer is None:
        return None
    student_vocab, teacher_vocab = tokenizer.get_vocab(), teacher_tokenizer.get_vocab()
    if student_vocab == teacher_vocab:
        return None
    missing = [token for token in student_vocab if token not in teacher_vocab]
    if missing:
        raise EdgeftError(
            f"distill: {len(missing)} student tokens are not in the teacher's vocabulary, e.g. {missing[:5]}"
        )
    lookup = torch.zeros(len(student_vocab), dtype=torch.long)
    for token, index in student_vocab.items():
        lookup[index] = teacher_vocab[token]
    return lookup


@functools.cache
def distill_trainer_class():
    """The Trainer subclass, built on first use: transformers is imported only when a student is distilled."""
    from edgeft.tasks import get_task
    from edgeft.training import ClassifierTrainer

    class DistillTrainer(ClassifierTrainer):
        """`ClassifierTrainer` whose loss mixes soft teacher labels, hard labels and (optionally) hidden states."""

        def __init__(self, *args, teacher, distill_config: DistillConfig, teacher_ids=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.distill_config = distill_config
            self.task = get_task(_unwrap(self.model).head_config.task)
            self.teacher = teacher.to(self.args.device) if distill_config.hidden_weight else None
            self.teacher_ids = teacher_ids.to(self.args.device) if teacher_ids is not None else None

        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()
            if TEACHER_LOGITS not in self._signature_columns:  # keep the column the model's forward does not take
                self._signature_columns.append(TEACHER_LOGITS)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            config = self.distill_config
            inputs = dict(inputs)
            teacher_logits = inputs.pop(TEACHER_LOGITS)
            labels = inputs.pop("labels")
            captured = _LayerStates(model) if self.teacher is not None else None
            logits = model(**inputs)
            loss = self.task.distill_loss(logits, teacher_logits, labels, config.temperature, config.alpha)
            if captured is not None:
                loss = loss + config.hidden_weight * self._hidden_loss(model, captured, inputs)
            return (loss, (loss, logits)) if return_outputs else loss

        def _hidden_loss(self, model, captured: "_LayerStates", inputs: dict) -> torch.Tensor:
            student_states = captured.close()
            teacher_inputs = dict(inputs)
            if self.teacher_ids is not None:
                teacher_inputs["input_ids"] = self.teacher_ids[inputs["input_ids"]]
            with torch.no_grad():
                watched = _LayerStates(self.teacher)
                self.teacher(**teacher_inputs)
                teacher_states = watched.close()
            mask = inputs["attention_mask"].unsqueeze(-1).to(student_states[0].dtype)
            pairs = zip(student_states, (teacher_states[i] for i in _layer_map(_unwrap(model), len(teacher_states))))
            losses = [(((s - t) ** 2) * mask).sum() / (mask.sum() * s.shape[-1]) for s, t in pairs]
            return torch.stack(losses).mean()

    return DistillTrainer


def _unwrap(model):
    return getattr(model, "module", model)  # DDP wraps the student


def _layer_map(student: SequenceClassifier, teacher_layers: int) -> list[int]:
    """The teacher layer each student layer matches: the one it was pruned from, else spread evenly."""
    count = student.encoder.config.num_hidden_layers
    kept = student.head_config.extra.get("prune", {}).get("layers_kept")
    if kept and len(kept) == count and max(kept) < teacher_layers:
        return list(kept)
    return [round((index + 1) * teacher_layers / count) - 1 for index in range(count)]


class _LayerStates:
    """Collects each encoder layer's output during one forward pass (forward hooks, removed by `close`)."""

    def __init__(self, model):
        self.states: list[torch.Tensor] = []
        layers = _unwrap(model).encoder.encoder.layer
        self.hooks = [layer.register_forward_hook(self._keep) for layer in layers]

    def _keep(self, _module, _args, output):
        self.states.append(output[0] if isinstance(output, tuple) else output)

    def close(self) -> list[torch.Tensor]:
        for hook in self.hooks:
            hook.remove()
        return self.states
