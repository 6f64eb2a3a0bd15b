"""Building the models that become candidates: the tuned model, and students made by the chain of passes."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from rich.progress import Progress

from edgeft.compress import distill, prune, vocab
from edgeft.atomic import promote
from edgeft.compress.config import CompressConfig
from edgeft.models import CLASSIFIER_CONFIG, load_classifier, load_tokenizer
from edgeft.training import tokenize

# The chain's vocabulary, visible in one place. Quantization happens per backend when each model is exported
# (`edgeft.export.export(model_dir, format, precision)`), so it is a candidate dimension, not a model pass.
PASSES = {
    "prune": prune.prune,  # (model, PruneConfig, validation split, tokenizer) -> smaller dense model
    "vocab": vocab.prune_vocab,  # (model, tokenizer, VocabConfig, training texts) -> (model, tokenizer)
    "distill": distill.distill,  # (student, teacher, DistillConfig, splits, tokenizer, folder) -> student
}


@dataclass
class Variant:
    """A classifier folder and the passes that made it from the tuned model."""

    name: str
    folder: Path
    chain: list[str] = field(default_factory=list)


def build_variants(teacher_dir: Path, config: CompressConfig, splits, cache: Path) -> list[Variant]:
    """The tuned model plus every student the config asks for.

    Students are kept in `cache` under a key of the teacher's weights and the passes' settings, so compressing the
    same run for another target (or again) reuses them instead of pruning and distilling twice.
    """
    teacher = load_classifier(teacher_dir)
    tokenizer = load_tokenizer(teacher_dir)
    variants = [Variant("tuned", teacher_dir)]
    train_texts = list(splits.train["text"])
    fingerprint = _fingerprint(teacher_dir)

    def folder(name: str, *settings) -> Path:
        payload = json.dumps([fingerprint, *[s.model_dump() if s else None for s in settings]], sort_keys=True)
        return cache / f"{name}-{hashlib.sha256(payload.encode()).hexdigest()[:12]}"

    def keep(name: str, target: Path, chain: list[str], build) -> None:
        if not (target / CLASSIFIER_CONFIG).is_file():
            model, student_tokenizer = build()
            staged = target.parent / f".{target.name}.partial"
            shutil.rmtree(staged, ignore_errors=True)
            model.save(staged, student_tokenizer)
            promote(staged, target)
        variants.append(Variant(name, target, chain))

    with Progress(transient=True) as progress:
        task = progress.add_task("building students", total=None)
        if config.vocab:
            keep("vocab", folder("vocab", config.vocab), ["vocab"],
                 lambda: PASSES["vocab"](teacher, tokenizer, config.vocab, train_texts))
        validation = tokenize(splits.validation, tokenizer, teacher.head_config.max_length)
        for level, settings in enumerate(config.prune, start=1):
            name = f"pruned{level}"
            chain = [f"prune({_describe(settings)})"] + (["vocab"] if config.vocab else [])
            progress.update(task, description=f"pruning {name}")

            @functools.cache
            def student(settings=settings):
                pruned = PASSES["prune"](teacher, settings, validation, tokenizer)
                if config.vocab:
                    return PASSES["vocab"](pruned, tokenizer, config.vocab, train_texts)
                return pruned, tokenizer

            if config.keep_undistilled or not config.distill:
                keep(name, folder(name, settings, config.vocab), chain, student)
            if config.distill:
                progress.update(task, description=f"distilling {name}")
                target = folder(f"{name}-distilled", settings, config.vocab, config.distill)
                keep(f"{name}-distilled", target, [*chain, "distill"],
                     lambda: _distilled(student(), teacher, tokenizer, config, splits))
    return variants


def _distilled(student, teacher, teacher_tokenizer, config: CompressConfig, splits):
    model, tokenizer = student
    model = copy.deepcopy(model)  # the undistilled student stays as it is
    with tempfile.TemporaryDirectory(prefix="edgeft-distill-") as checkpoints:
        trained = PASSES["distill"](model, teacher, config.distill, splits, tokenizer, Path(checkpoints),
                                    teacher_tokenizer=teacher_tokenizer if config.vocab else None)
    return trained, tokenizer


def _fingerprint(model_dir: Path) -> list:
    """Identifies the teacher's weights without hashing them: names, sizes and modification times."""
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in model_dir.glob("*.safetensors"))


def _describe(settings) -> str:
    fields = settings.model_dump(include={"heads", "ffn", "layers"})
    return ",".join(f"{key}={value}" for key, value in fields.items() if value)
