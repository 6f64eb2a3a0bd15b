"""The pass registry on the tiny model: every pass through the cached engine, each output checked for what it did."""

import json

import numpy as np
import pytest

from edgeft.compress import engine
from edgeft.compress.distill import DistillConfig
from edgeft.compress.export import Config as ExportConfig
from edgeft.compress.passes import PASSES, PassContext
from edgeft.compress.prune import PruneConfig
from edgeft.compress.vocab import VocabConfig
from edgeft.data import load_splits
from edgeft.export.source import read_lock, resolve
from edgeft.models import load_classifier, load_tokenizer


@pytest.fixture(scope="module")
def context(tiny_run):
    source = resolve(tiny_run)
    recipe = read_lock(source.recipe)
    splits = load_splits(recipe.data, seed=recipe.training.seed)
    examples = [(text, splits.labels[label]) for text, label in zip(splits.validation["text"], splits.validation["label"])]
    return source.model_dir, PassContext(source.model_dir, splits, examples, list(splits.train["text"][:50]))


def _params(folder):
    return sum(p.numel() for p in load_classifier(folder).parameters())


def test_registry_lists_every_pass_with_one_shape():
    assert list(PASSES) == ["prune", "vocab", "distill", "export"]
    for module in PASSES.values():
        assert callable(module.run) and hasattr(module, "Space") and isinstance(module.COSTLY, bool)


def test_each_pass_through_the_engine(context, tmp_path):
    # setup
    teacher, ctx = context
    cache, key = tmp_path / "cache", engine.model_key(teacher)
    # execute: the chain by hand
    pruned_key, pruned, built = engine.apply("prune", teacher, key, PruneConfig(heads=0.5, ffn=0.5, layers=1), cache,
                                             ctx)
    vocab_key, small, _ = engine.apply("vocab", pruned, pruned_key, VocabConfig(), cache, ctx)
    distill = DistillConfig(max_steps=3, batch_size=8, learning_rate=1e-3)
    distilled_key, distilled, _ = engine.apply("distill", small, vocab_key, distill, cache, ctx)
    _, bundle, _ = engine.apply("export", distilled, distilled_key, ExportConfig(format="onnx", precision="int8"),
                                cache, ctx)
    # assert: each pass did its own job
    model = load_classifier(pruned)
    assert model.encoder.config.num_hidden_layers == load_classifier(teacher).encoder.config.num_hidden_layers - 1
    assert _params(pruned) < _params(teacher) and built > 0
    assert len(load_tokenizer(small)) < len(load_tokenizer(pruned))
    before, after = load_classifier(small), load_classifier(distilled)
    assert not np.allclose(before.head.weight.detach().numpy(), after.head.weight.detach().numpy())
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["format"] == "onnx" and manifest["precision"] == "int8" and manifest["verification"]["passed"]
    # execute again: every output comes from the cache, nothing is rebuilt
    stamps = {p: p.stat().st_mtime_ns for p in cache.rglob("*.safetensors")}
    again = engine.apply("prune", teacher, key, PruneConfig(heads=0.5, ffn=0.5, layers=1), cache, ctx)
    assert again == (pruned_key, pruned, 0.0)
    assert engine.cached(cache, pruned_key, "vocab", VocabConfig()) == small
    assert stamps == {p: p.stat().st_mtime_ns for p in cache.rglob("*.safetensors")}
    # a different config is a different key
    assert engine.output_key(key, "prune", PruneConfig(heads=0.25)) != pruned_key
