"""Structured pruning on the tiny random BERT: what is removed, what is chosen, and that the result reloads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset
from pydantic import ValidationError

from edgeft.compress.prune import PruneConfig, prune
from edgeft.errors import EdgeftError
from edgeft.models import (
    HeadConfig,
    SequenceClassifier,
    count_parameters,
    load_classifier,
    load_encoder,
    load_tokenizer,
)
from edgeft.training import model_logits, tokenize

LABELS = ["card_lost", "transfer", "fees"]
WORDS = "card lost stolen transfer money send fee charge cost wallet account extra".split()


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("tiny-bert")


@pytest.fixture(scope="module")
def data(tokenizer):
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 9)))) for _ in range(48)]
    return tokenize(Dataset.from_dict({"text": texts, "label": [i % 3 for i in range(48)]}), tokenizer, 32)


def tiny_classifier(seed: int = 0) -> SequenceClassifier:
    torch.manual_seed(seed)
    return SequenceClassifier(load_encoder("tiny-bert"), HeadConfig(labels=LABELS, max_length=32)).eval()


def test_prune_removes_heads_neurons_and_layers_and_still_runs(data, tokenizer):
    # setup
    model = tiny_classifier()
    # execute
    pruned = prune(model, PruneConfig(heads=0.5, ffn=0.5, layers=1), data, tokenizer)
    # assert
    layers = pruned.encoder.encoder.layer
    assert len(layers) == pruned.encoder.config.num_hidden_layers == 1
    assert layers[0].attention.self.num_attention_heads == 2
    assert layers[0].intermediate.dense.out_features == layers[0].output.dense.in_features == 32
    assert pruned.encoder.config.intermediate_size == 32
    assert count_parameters(pruned)["total"] < count_parameters(model)["total"]
    assert model_logits(pruned, data, tokenizer).shape == (len(data), len(LABELS))
    assert model.encoder.config.num_hidden_layers == 2  # the input model is left untouched
    assert pruned.head_config.extra["prune"]["heads_per_layer"] == [2]


def test_pruned_model_saves_and_reloads_with_identical_logits(data, tokenizer, tmp_path):
    # setup: heads first, then a layer, so pruned_heads must be re-indexed
    pruned = prune(tiny_classifier(), PruneConfig(heads=0.5, ffn=0.25), data, tokenizer)
    pruned = prune(pruned, PruneConfig(layers=1), data, tokenizer)
    # execute
    pruned.save(tmp_path, tokenizer)
    reloaded = load_classifier(tmp_path)
    # assert
    assert list(reloaded.encoder.config.pruned_heads) == [0]
    assert pruned.head_config.extra["prune"]["layers_kept"] == reloaded.head_config.extra["prune"]["layers_kept"]
    np.testing.assert_array_equal(model_logits(pruned, data, tokenizer), model_logits(reloaded, data, tokenizer))


def test_importance_removes_dead_heads_neurons_and_layers_first(data, tokenizer):
    # setup: head 1 of layer 0 outputs zeros, neurons 0-15 of every layer never fire, layer 1 is an identity
    model = tiny_classifier()
    with torch.no_grad():
        first, second = model.encoder.encoder.layer
        first.attention.self.value.weight[8:16] = 0
        first.attention.self.value.bias[8:16] = 0
        for layer in (first, second):
            layer.intermediate.dense.weight[:16] = 0
            layer.intermediate.dense.bias[:16] = -10  # gelu(-10) == 0
        for dense in (second.attention.output.dense, second.output.dense):
            dense.weight.zero_()
            dense.bias.zero_()
    # execute
    heads = prune(model, PruneConfig(heads=0.125), data, tokenizer)
    neurons = prune(model, PruneConfig(ffn=0.25), data, tokenizer)
    layers = prune(model, PruneConfig(layers=1), data, tokenizer)
    # assert
    assert heads.encoder.config.pruned_heads == {0: [1]}
    kept = neurons.encoder.encoder.layer[0].intermediate.dense.bias
    assert torch.all(kept > -10)
    assert layers.head_config.extra["prune"]["layers_kept"] == [0]


def test_every_layer_keeps_a_head(data, tokenizer):
    pruned = prune(tiny_classifier(), PruneConfig(heads=0.9), data, tokenizer)
    assert pruned.head_config.extra["prune"]["heads_per_layer"] == [1, 1]


def test_bad_settings_are_rejected(data, tokenizer):
    with pytest.raises(ValidationError):
        PruneConfig(heads=1.0)
    with pytest.raises(ValidationError):
        PruneConfig(head=0.3)
    with pytest.raises(EdgeftError, match="prune.layers"):
        prune(tiny_classifier(), PruneConfig(layers=2), data, tokenizer)


def test_pruned_model_exports_to_onnx_with_the_same_logits(data, tokenizer, tmp_path):
    # setup: uneven heads per layer, sliced FFN
    ort = pytest.importorskip("onnxruntime")
    pruned = prune(tiny_classifier(), PruneConfig(heads=0.4, ffn=0.5), data, tokenizer)
    example = tokenizer(["lost card", "send money to my account please"], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask"]
    # execute
    torch.onnx.export(
        pruned, tuple(example[name] for name in names), str(tmp_path / "model.onnx"), input_names=names,
        output_names=["logits"], dynamic_axes={name: {0: "batch", 1: "sequence"} for name in names}, dynamo=False,
    )
    # assert: on a batch of another shape
    batch = tokenizer(["fee charge", "a much longer question about the extra cost of a transfer"], padding=True)
    feed = {name: np.array(batch[name], dtype=np.int64) for name in names}
    onnx_logits = ort.InferenceSession(str(tmp_path / "model.onnx")).run(None, feed)[0]
    with torch.no_grad():
        torch_logits = pruned(**{name: torch.from_numpy(array) for name, array in feed.items()}).numpy()
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-5)
