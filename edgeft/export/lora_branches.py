"""int4 weights without losing a LoRA fine-tune: the base model's projections in 4 bits, the adapter beside them.

A LoRA update is small next to a 4-bit step: quantizing the merged weights rounds most of it away (SmolLM2 + E2E:
validation BLEU 67.1 merged, 32.0 as merged int4). So the base graph is quantized (SmolLM2's weights come from a
4-bit GGUF grid, which HQQ reproduces almost exactly) and each adapted projection gets its low-rank update back in fp32:
y = x W_int4 + (x A^T) (s B^T), two small MatMuls per projection (r columns).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from edgeft.errors import EdgeftError

ADAPTER_CONFIG = "adapter_config.json"
# peft module (layer, projection) -> the onnxruntime-genai builder's MatMul, and where it sits in a fused one
FUSED = {"q_proj": "attn/qkv_proj", "k_proj": "attn/qkv_proj", "v_proj": "attn/qkv_proj"}
PLAIN = {"o_proj": "attn/o_proj", "gate_proj": "mlp/gate_proj", "up_proj": "mlp/up_proj", "down_proj": "mlp/down_proj"}
FUSED_ORDER = ("q_proj", "k_proj", "v_proj")
KEY = re.compile(r"layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])\.weight$")


def read_adapter(adapter_dir: Path) -> dict[tuple[int, str], tuple[np.ndarray, np.ndarray]]:
    """Per (layer, projection), the LoRA update as its two matrices (A^T, s B^T): x -> (x A^T) (s B^T).

    Raises:
        EdgeftError: no LoRA adapter there, or one this path cannot carry (DoRA, trained biases).
    """
    from safetensors.numpy import load_file

    config_file = adapter_dir / ADAPTER_CONFIG
    if not config_file.is_file():
        raise EdgeftError(f"{adapter_dir}: int4-lora needs the run's LoRA adapter (adapter/ beside merged/)")
    config = json.loads(config_file.read_text())
    if (config.get("use_dora") or config.get("bias", "none") != "none" or config.get("modules_to_save")
            or config.get("rank_pattern") or config.get("alpha_pattern")):
        raise EdgeftError(f"{config_file}: int4-lora carries plain LoRA updates only (one rank and alpha; no DoRA, "
                          "biases or saved modules); use int4 or int4-genai")
    rank = int(config["r"])
    scale = float(config["lora_alpha"]) / (rank ** 0.5 if config.get("use_rslora") else rank)
    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    parts: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    for key, value in weights.items():
        match = KEY.search(key)
        if match:
            parts.setdefault((int(match[1]), match[2]), {})[match[3]] = value.astype(np.float32)
    return {module: (pair["A"].T, (scale * pair["B"]).T) for module, pair in parts.items()}


def write_base(model_dir: Path, updates: dict, folder: Path) -> Path:
    """The base model recovered from the merged one (merged weights minus the updates, exact to float rounding), as
    an HF folder with the tokenizer: no need for the base's own files, which may be a hub id or a moved cache."""
    import torch
    from transformers import AutoTokenizer

    from edgeft.decoders import load_decoder

    model = load_decoder(model_dir)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for (layer, projection), (down, up) in updates.items():
            block = "self_attn" if projection in (*FUSED, "o_proj") else "mlp"
            modules[f"model.layers.{layer}.{block}.{projection}"].weight -= torch.from_numpy((down @ up).T)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(model_dir)).save_pretrained(folder)
    return folder


def add_branches(model, updates: dict) -> object:
    """Add each projection's low-rank update to the builder graph `model` (an onnx ModelProto, quantized or not):
    the tensor a projection's MatMul wrote is now its quantized product plus the update."""
    from onnx import helper, numpy_helper

    graph = model.graph
    producers = {output: node for node in graph.node for output in node.output}
    targets: dict[str, list] = {}
    for (layer, projection), (down, up) in sorted(updates.items()):
        name = FUSED.get(projection) or PLAIN.get(projection)
        if name is None:
            raise EdgeftError(f"int4-lora: no graph projection for adapted module {projection!r} (layer {layer})")
        targets.setdefault(f"/model/layers.{layer}/{name}", []).append((projection, down, up))
    after: dict[str, list] = {}  # a projection's renamed output -> the branch nodes that go right after it
    for prefix, items in targets.items():
        output = f"{prefix}/MatMul/output_0"
        node = producers.get(output)
        source = next((n for n in graph.node if n.name.startswith(f"{prefix}/MatMul") and n.input), None)
        if node is None or source is None:
            raise EdgeftError(f"int4-lora: the graph has no {prefix}/MatMul to carry its LoRA update")
        down, up = _fused(items) if len(items) > 1 else items[0][1:]
        tag = prefix.strip("/").replace("/", "_")
        graph.initializer.extend([numpy_helper.from_array(np.ascontiguousarray(down), f"{tag}_lora_down"),
                                  numpy_helper.from_array(np.ascontiguousarray(up), f"{tag}_lora_up")])
        node.output[list(node.output).index(output)] = f"{output}_base"
        after[f"{output}_base"] = [
            helper.make_node("MatMul", [source.input[0], f"{tag}_lora_down"], [f"{tag}_lora_rank"]),
            helper.make_node("MatMul", [f"{tag}_lora_rank", f"{tag}_lora_up"], [f"{tag}_lora_update"]),
            helper.make_node("Add", [f"{output}_base", f"{tag}_lora_update"], [output])]
    # right after the projection's last node: its input and output exist there, its readers all come later
    nodes = [new for node in graph.node
             for new in (node, *(branch for name in node.output for branch in after.get(name, ())))]
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def _fused(items: list) -> tuple[np.ndarray, np.ndarray]:
    """q, k and v updates as one: their down matrices side by side, their up matrices block-diagonal."""
    by_name = {projection: (down, up) for projection, down, up in items}
    if set(by_name) != set(FUSED_ORDER):
        raise EdgeftError(f"int4-lora: q, k and v share one fused MatMul; adapt all three or none "
                          f"(got {', '.join(sorted(by_name))})")
    downs = [by_name[name][0] for name in FUSED_ORDER]
    ups = [by_name[name][1] for name in FUSED_ORDER]
    block = np.zeros((sum(u.shape[0] for u in ups), sum(u.shape[1] for u in ups)), dtype=np.float32)
    row = column = 0
    for up in ups:
        block[row : row + up.shape[0], column : column + up.shape[1]] = up
        row, column = row + up.shape[0], column + up.shape[1]
    return np.concatenate(downs, axis=1), block
