"""Distillation on the tiny random BERT: the student moves towards the teacher on held-out data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset
from pydantic import ValidationError

from edgeft.compress.distill import DistillConfig, distill
from edgeft.compress.prune import PruneConfig, prune
from edgeft.compress.vocab import VocabConfig, prune_vocab
from edgeft.data import Splits
from edgeft.errors import EdgeftError
from edgeft.models import HeadConfig, SequenceClassifier, load_encoder, load_tokenizer
from edgeft.training import model_logits, tokenize

LABELS = ["card_lost", "transfer", "fees"]
WORDS = "card lost stolen transfer money send fee charge cost wallet account extra".split()
FAST = dict(max_steps=8, batch_size=16, learning_rate=2e-3, temperature=1.0)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("tiny-bert")


@pytest.fixture(scope="module")
def splits():
    rng = np.random.default_rng(0)

    def split(rows):
        texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 9)))) for _ in range(rows)]
        return Dataset.from_dict({"text": texts, "label": [i % 3 for i in range(rows)]})

    return Splits(split(64), split(16), split(32), LABELS)


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    model = SequenceClassifier(load_encoder("tiny-bert"), HeadConfig(labels=LABELS, max_length=32)).eval()
    with torch.no_grad():
        model.head.weight.mul_(3)  # sharper, input-dependent teacher predictions
    return model


def kl_to_teacher(student, student_tokenizer, teacher, tokenizer, texts) -> float:
    """Mean KL(teacher || student) over held-out texts."""
    teacher_logp = torch.tensor(model_logits(teacher, tokenize(texts, tokenizer, 32), tokenizer)).log_softmax(-1)
    student_logits = model_logits(student, tokenize(texts, student_tokenizer, 32), student_tokenizer)
    student_logp = torch.tensor(student_logits).log_softmax(-1)
    return float((teacher_logp.exp() * (teacher_logp - student_logp)).sum(-1).mean())


@pytest.mark.parametrize("hidden_weight", [0.0, 1.0])
def test_distillation_lowers_kl_to_the_teacher(teacher, tokenizer, splits, tmp_path, hidden_weight):
    # setup: a pruned, vocabulary-pruned student with a fresh head
    validation = tokenize(splits.validation, tokenizer, 32)
    student = prune(teacher, PruneConfig(heads=0.5, ffn=0.5, layers=1), validation, tokenizer)
    student, student_tokenizer = prune_vocab(student, tokenizer, VocabConfig(), splits.train["text"])
    student.head.reset_parameters()
    before = kl_to_teacher(student, student_tokenizer, teacher, tokenizer, splits.test)
    # execute
    config = DistillConfig(alpha=1.0, hidden_weight=hidden_weight, **FAST)
    distilled = distill(student, teacher, config, splits, student_tokenizer, tmp_path, teacher_tokenizer=tokenizer)
    # assert
    assert kl_to_teacher(distilled, student_tokenizer, teacher, tokenizer, splits.test) < before / 2
    assert not distilled.training


def test_mismatches_are_reported(teacher, tokenizer, splits, tmp_path):
    other_labels = SequenceClassifier(load_encoder("tiny-bert"), HeadConfig(labels=["x", "y", "z"]))
    with pytest.raises(EdgeftError, match="same labels"):
        distill(other_labels, teacher, DistillConfig(**FAST), splits, tokenizer, tmp_path)
    wider = load_encoder("tiny-bert")
    wider.config.hidden_size = 64  # only the width check reads it; the error comes before any training
    with pytest.raises(EdgeftError, match="distill.hidden_weight"):
        distill(SequenceClassifier(wider, HeadConfig(labels=LABELS)), teacher,
                DistillConfig(hidden_weight=1.0, **FAST), splits, tokenizer, tmp_path)


def test_bad_settings_are_rejected():
    with pytest.raises(ValidationError):
        DistillConfig(alpha=1.5)
    with pytest.raises(ValidationError):
        DistillConfig(temp=2.0)
