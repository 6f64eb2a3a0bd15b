"""Building the models that become candidates: the tuned model, and students made by the chain of passes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.progress import Progress

from edgeft.compress import distill, prune, vocab
from edgeft.compress.config import CompressConfig
from edgeft.models import SequenceClassifier, load_classifier, load_tokenizer
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


def build_variants(teacher_dir: Path, config: CompressConfig, splits, workdir: Path) -> list[Variant]:
    """The tuned model plus every student the config asks for, each saved under `workdir/models/`."""
    teacher = load_classifier(teacher_dir)
    tokenizer = load_tokenizer(teacher_dir)
    variants = [Variant("tuned", teacher_dir)]
    train_texts = list(splits.train["text"])
    steps = (1 if config.vocab else 0) + len(config.prune) * (2 if config.distill else 1)
    with Progress(transient=True) as progress:
        task = progress.add_task("building students", total=steps)

        def save(name: str, model: SequenceClassifier, student_tokenizer, chain: list[str]) -> None:
            folder = workdir / "models" / name
            model.save(folder, student_tokenizer)
            variants.append(Variant(name, folder, chain))
            progress.advance(task)

        if config.vocab:
            model, vocab_tokenizer = PASSES["vocab"](teacher, tokenizer, config.vocab, train_texts)
            save("vocab", model, vocab_tokenizer, ["vocab"])
        validation = tokenize(splits.validation, tokenizer, teacher.head_config.max_length)
        for level, settings in enumerate(config.prune, start=1):
            chain = [f"prune({_describe(settings)})"]
            student = PASSES["prune"](teacher, settings, validation, tokenizer)
            student_tokenizer = tokenizer
            if config.vocab:
                student, student_tokenizer = PASSES["vocab"](student, tokenizer, config.vocab, train_texts)
                chain.append("vocab")
            name = f"pruned{level}"
            if config.keep_undistilled or not config.distill:
                save(name, student, student_tokenizer, chain)
            if config.distill:
                progress.update(task, description=f"distilling {name}")
                student = PASSES["distill"](
                    student, teacher, config.distill, splits, student_tokenizer, workdir / "distill" / name,
                    teacher_tokenizer=tokenizer if config.vocab else None,
                )
                save(f"{name}-distilled", student, student_tokenizer, [*chain, "distill"])
    return variants


def _describe(settings) -> str:
    fields = settings.model_dump(include={"heads", "ffn", "layers"})
    return ",".join(f"{key}={value}" for key, value in fields.items() if value)
