"""Structured pruning of a BERT-family encoder: whole layers, attention heads and FFN neurons.

The result is a smaller dense model (sliced `nn.Linear` weights, not masks) that `from_pretrained` reloads:
head surgery goes through `PreTrainedModel.prune_heads` (recorded in `config.pruned_heads`), FFN pruning removes the
same number of neurons in every layer (so `config.intermediate_size` describes them all), and dropped layers shrink
`config.num_hidden_layers`.

Importance is measured on labelled validation data:
- heads: |d loss / d gate| of a gate on each head's output, summed over batches and normalised per layer
  (Michel et al. 2019, "Are Sixteen Heads Really Better than One?"). The gate multiplies a head's context vector,
  which equals BERT's `head_mask` on its attention probabilities, and works with any attention implementation.
- FFN neurons: the same first-order estimate for a gate on each intermediate activation (|sum of activation x
  gradient|, Molchanov et al. 2019), ranked within each layer.
- layers: the validation loss with the layer removed, dropped greedily one at a time (the cheapest first).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated

import torch
from pydantic import Field, NonNegativeInt, PositiveInt

from edgeft.errors import EdgeftError
from edgeft.models import SequenceClassifier
from edgeft.recipe import Strict


class PruneConfig(Strict):
    heads: float = Field(0.0, ge=0.0, lt=1.0)
    """Fraction of attention heads to remove, ranked globally (each layer keeps at least one)."""
    ffn: float = Field(0.0, ge=0.0, lt=1.0)
    """Fraction of FFN intermediate neurons to remove; the same number in every layer."""
    layers: NonNegativeInt = 0
    """Number of whole encoder layers to remove (the least important, measured one at a time)."""
    samples: PositiveInt = 512
    """Validation rows used to measure importance."""
    batch_size: PositiveInt = 32
    """Rows per batch while measuring importance."""


Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]


class Space(Strict):
    """What the search tries: one of each list per trial; all zeros skips the pass."""

    heads: list[Fraction] = Field([0.0, 0.25, 0.5], min_length=1)
    """Fractions of attention heads to remove."""
    ffn: list[Fraction] = Field([0.0, 0.3, 0.6], min_length=1)
    """Fractions of FFN neurons to remove."""
    layers: list[NonNegativeInt] = Field([0, 1, 2], min_length=1)
    """Numbers of whole layers to remove."""
    samples: PositiveInt = 512
    """Validation rows used to measure importance."""

    def off(self) -> dict:
        """The parameters that skip the pass (where the space allows it)."""
        zero = {"prune.heads": 0.0 in self.heads, "prune.ffn": 0.0 in self.ffn, "prune.layers": 0 in self.layers}
        return {name: 0 if name == "prune.layers" else 0.0 for name in zero} if all(zero.values()) else {}

    def sample(self, trial, earlier: dict, profile) -> PruneConfig | None:
        config = PruneConfig(heads=trial.suggest_categorical("prune.heads", self.heads),
                             ffn=trial.suggest_categorical("prune.ffn", self.ffn),
                             layers=trial.suggest_categorical("prune.layers", self.layers), samples=self.samples)
        return config if config.heads or config.ffn or config.layers else None


Config = PruneConfig
COSTLY = False


def run(model_dir: Path, config: PruneConfig, out_dir: Path, context) -> Path:
    """The pass: prune the classifier in `model_dir` (importance on the validation split) into `out_dir`."""
    from edgeft.models import load_classifier, load_tokenizer
    from edgeft.tasks import get_task

    model, tokenizer = load_classifier(model_dir), load_tokenizer(model_dir)
    task = get_task(model.head_config.task)
    validation = task.tokenize(context.splits.validation, tokenizer, model.head_config.max_length)
    prune(model, config, validation, tokenizer).save(out_dir, tokenizer)
    return out_dir


def prune(model: SequenceClassifier, config: PruneConfig, dataset, tokenizer) -> SequenceClassifier:
    """A pruned copy of `model` (the input is left untouched).

    Args:
        model: the classifier to prune (a BERT-family encoder: BERT, RoBERTa, ELECTRA, MiniLM...).
        config: what to remove.
        dataset: a tokenized split with its targets (`label` or `labels`), as the model's task tokenizes it.
        tokenizer: the model's tokenizer (pads the batches).

    Returns:
        The pruned classifier in eval mode; `head_config.extra["prune"]` records what was kept.

    Raises:
        EdgeftError: an encoder without BERT's layer structure, or more layers to drop than it has.
    """
    model = copy.deepcopy(model).eval()
    layers = _layers(model.encoder)
    if config.layers >= len(layers):
        raise EdgeftError(f"prune.layers: must be below the encoder's {len(layers)} layers (got {config.layers})")
    batches = _batches(dataset, tokenizer, config, model.head_config.task)
    record = model.head_config.extra.setdefault("prune", {})
    original_layers = record.get("layers_kept", list(range(len(layers))))

    kept = _choose_layers(model, batches, config.layers)
    _keep_layers(model.encoder, kept)
    record["layers_kept"] = [original_layers[index] for index in kept]

    if config.heads or config.ffn:
        head_scores, neuron_scores = _gate_gradients(model, batches)
        if config.heads:
            _prune_heads(model.encoder, head_scores, config.heads)
        if config.ffn:
            _prune_neurons(model.encoder, neuron_scores, config.ffn)
    record.update(
        heads_per_layer=[layer.attention.self.num_attention_heads for layer in _layers(model.encoder)],
        intermediate_size=model.encoder.config.intermediate_size,
    )
    return model.eval()


def _layers(encoder) -> torch.nn.ModuleList:
    stack = getattr(getattr(encoder, "encoder", None), "layer", None)
    first = stack[0] if stack else None
    if first is None or not all(hasattr(first, name) for name in ("attention", "intermediate", "output")):
        raise EdgeftError(
            f"prune: {type(encoder).__name__} is not a BERT-family encoder (encoder.layer[i].attention/intermediate)"
        )
    return stack


def _batches(dataset, tokenizer, config: PruneConfig, task: str) -> list[dict]:
    """Padded batches of the first `samples` rows, with `labels`, made once and reused by every measurement."""
    from edgeft.tasks import get_task

    targets = [c for c in ("label", "labels") if c in dataset.column_names]
    if not targets:
        raise EdgeftError("prune: the importance data needs its targets (a `label` or `labels` column)")
    columns = [c for c in dataset.column_names if c in ("input_ids", "attention_mask", "token_type_ids", *targets)]
    rows = dataset.select_columns(columns).select(range(min(config.samples, len(dataset))))
    collator = get_task(task).collator(tokenizer)
    return [
        collator([rows[i] for i in range(start, min(start + config.batch_size, len(rows)))])
        for start in range(0, len(rows), config.batch_size)
    ]


@torch.no_grad()
def _loss(model, batches) -> float:
    return sum(model(**batch)[0].item() * len(batch["labels"]) for batch in batches)


def _choose_layers(model, batches, drop: int) -> list[int]:
    """Indices of the layers to keep: remove, one at a time, the layer whose absence raises the loss least."""
    stack = model.encoder.encoder.layer
    kept = list(range(len(stack)))
    try:
        for _ in range(drop):
            losses = {}
            for candidate in kept:
                model.encoder.encoder.layer = torch.nn.ModuleList(stack[i] for i in kept if i != candidate)
                losses[candidate] = _loss(model, batches)
            kept.remove(min(losses, key=losses.get))
    finally:
        model.encoder.encoder.layer = stack
    return kept


def _keep_layers(encoder, kept: list[int]) -> None:
    """Keep only `kept` layers, re-indexing `config.pruned_heads` so `from_pretrained` rebuilds the same shapes."""
    stack = encoder.encoder.layer
    if len(kept) == len(stack):
        return
    encoder.encoder.layer = torch.nn.ModuleList(stack[i] for i in kept)
    pruned = {int(layer): heads for layer, heads in encoder.config.pruned_heads.items()}
    encoder.config.pruned_heads = {new: pruned[old] for new, old in enumerate(kept) if pruned.get(old)}
    encoder.config.num_hidden_layers = len(kept)
    for new, layer in enumerate(encoder.encoder.layer):
        if hasattr(layer.attention.self, "layer_idx"):  # the key into a decoder's cache; keep it consistent
            layer.attention.self.layer_idx = new


def _gate_gradients(model, batches) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per layer, the accumulated |d loss / d gate| for every head and every intermediate neuron."""
    stack = _layers(model.encoder)
    head_gates = [torch.ones(layer.attention.self.num_attention_heads, requires_grad=True) for layer in stack]
    neuron_gates = [torch.ones(layer.intermediate.dense.out_features, requires_grad=True) for layer in stack]
    hooks = []
    for layer, heads, neurons in zip(stack, head_gates, neuron_gates):
        hooks.append(layer.attention.self.register_forward_hook(_gate_heads(heads)))
        hooks.append(layer.intermediate.register_forward_hook(lambda _m, _a, out, gate=neurons: out * gate))
    head_scores = [torch.zeros_like(gate) for gate in head_gates]
    neuron_scores = [torch.zeros_like(gate) for gate in neuron_gates]
    try:
        for batch in batches:
            loss, _ = model(**batch)
            # autograd.grad only differentiates the gates: no weight gradients are accumulated.
            grads = torch.autograd.grad(loss, head_gates + neuron_gates)
            for score, grad in zip(head_scores + neuron_scores, grads):
                score += grad.abs()
    finally:
        for hook in hooks:
            hook.remove()
    return head_scores, neuron_scores


def _gate_heads(gate: torch.Tensor):
    def hook(_module, _args, output):
        context, *rest = output
        shape = context.shape
        gated = context.view(*shape[:-1], len(gate), -1) * gate[:, None]
        return (gated.view(shape), *rest)

    return hook


def _prune_heads(encoder, scores: list[torch.Tensor], fraction: float) -> None:
    """Remove the globally least important heads (scores normalised per layer), keeping one per layer."""
    stack = _layers(encoder)
    normalised = [score / score.norm().clamp(min=1e-12) for score in scores]
    ranking = sorted((float(s), layer, head) for layer, row in enumerate(normalised) for head, s in enumerate(row))
    remaining = [len(row) for row in normalised]
    target = round(fraction * sum(remaining))
    chosen: dict[int, list[int]] = {}
    for _, layer, head in ranking:
        if sum(len(heads) for heads in chosen.values()) == target:
            break
        if remaining[layer] > 1:
            remaining[layer] -= 1
            chosen.setdefault(layer, []).append(head)
    total = encoder.config.num_attention_heads
    original = {}
    for layer, heads in chosen.items():
        # prune_heads takes heads by their original index; an already pruned layer has fewer current heads.
        alive = sorted(set(range(total)) - stack[layer].attention.pruned_heads)
        original[layer] = [alive[head] for head in heads]
    encoder.prune_heads(original)


def _prune_neurons(encoder, scores: list[torch.Tensor], fraction: float) -> None:
    """Keep the same number of the most important intermediate neurons in every layer."""
    from transformers.pytorch_utils import prune_linear_layer

    size = encoder.config.intermediate_size
    keep = size - round(fraction * size)
    for layer, score in zip(_layers(encoder), scores):
        index = score.topk(keep).indices.sort().values
        layer.intermediate.dense = prune_linear_layer(layer.intermediate.dense, index, dim=0)
        layer.output.dense = prune_linear_layer(layer.output.dense, index, dim=1)
    encoder.config.intermediate_size = keep
