"""A causal LM to TFLite through litert-torch's generative API: one `model.tflite` with a `prefill_<n>` and a
`decode` signature over an external, fixed-size KV cache (the layout LiteRT-LM runs on phones).

litert-torch rebuilds the model from its own layers (a Llama-family config mapped from the HF config below) and
loads the HF safetensors into them; its converter quantizes with ai-edge-quantizer (int8: int8 weights with
activations quantized per call; int8-weights: int8 weights, float activations; int4: 4-bit weights in blocks of
32). The KV cache is fixed at export: the bundle's context is that size, so prompts plus generated tokens must fit it.
"""

from __future__ import annotations

from pathlib import Path

from edgeft.errors import EdgeftError, missing_extra

# edgeft precision -> litert-torch's quantization name. Both int8 kinds are offered because neither wins outright on
# SmolLM2 (measured): `int8` (activations quantized per call) decodes 1.9x faster, `int8-weights` (float activations;
# XNNPACK unpacks the weights, peak RSS 2.7 GB) agrees better with PyTorch (96.7% vs 87.4% teacher-forced top-1).
QUANTIZE = {"fp32": "none", "int8": "dynamic_int8", "int8-weights": "weight_only_int8", "int4": "dynamic_int4_block32"}
PRECISIONS = tuple(QUANTIZE)
PREFILL_TOKENS = 128  # longer prompts are prefilled in chunks of this many tokens
CACHE_MULTIPLE = 64
ARCHITECTURES = ("LlamaForCausalLM",)


def cache_length(max_length: int, max_new_tokens: int, model_limit: int) -> int:
    """The fixed KV-cache size: the recipe's longest training sequence plus a full generation, rounded up."""
    wanted = -(-(max_length + max_new_tokens) // CACHE_MULTIPLE) * CACHE_MULTIPLE
    return min(wanted, model_limit)


def model_config(config, context_length: int):
    """litert-torch's ModelConfig of an HF Llama-family config (grouped-query attention, gated SiLU MLP, RMSNorm)."""
    from litert_torch.generative.layers import model_config as cfg

    architectures = list(getattr(config, "architectures", None) or [])
    if architectures and architectures[0] not in ARCHITECTURES:
        raise EdgeftError(f"--format tflite: litert-torch's generative path is wired here for "
                          f"{', '.join(ARCHITECTURES)} (got {architectures[0]}); use onnx or openvino")
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
    attention = cfg.AttentionConfig(
        num_heads=config.num_attention_heads, head_dim=head_dim,
        num_query_groups=config.num_key_value_heads or config.num_attention_heads,
        rotary_base=int(getattr(config, "rope_theta", 10000)), rotary_percentage=1.0)
    feed_forward = cfg.FeedForwardConfig(
        type=cfg.FeedForwardType.GATED, activation=cfg.ActivationConfig(cfg.ActivationType.SILU),
        intermediate_size=config.intermediate_size)
    norm = cfg.NormalizationConfig(type=cfg.NormalizationType.RMS_NORM, epsilon=config.rms_norm_eps)
    block = cfg.TransformerBlockConfig(attn_config=attention, ff_config=feed_forward, pre_attention_norm_config=norm,
                                       post_attention_norm_config=norm)
    return cfg.ModelConfig(vocab_size=config.vocab_size, num_layers=config.num_hidden_layers,
                           max_seq_len=context_length, embedding_dim=config.hidden_size, block_configs=block,
                           final_norm_config=norm,
                           lm_head_share_weight_with_embedding=bool(config.tie_word_embeddings))


def _generative_api():
    """litert-torch's converter, model builder and ExportConfig. Its layers import TensorFlow's flatbuffer schema
    (used only to edit LoRA weights inside a .tflite file); TensorFlow is not installed (STACK.md), so the same
    schema module from ai-edge-litert stands in while they import, and the stand-ins are removed afterwards."""
    import importlib.util
    import sys
    import types

    try:
        stand_ins = {}
        if importlib.util.find_spec("tensorflow") is None:
            from ai_edge_litert import schema_py_generated

            stand_ins = {name: types.ModuleType(name) for name in ("tensorflow", "tensorflow.lite",
                                                                     "tensorflow.lite.python")}
            stand_ins["tensorflow.lite.python.schema_py_generated"] = schema_py_generated
            sys.modules.update(stand_ins)
        try:
            from litert_torch.generative.utilities import converter, model_builder
            from litert_torch.generative.utilities.export_config import ExportConfig
        finally:
            for name in stand_ins:
                sys.modules.pop(name, None)
    except ImportError:
        raise missing_extra("Causal-LM TFLite export", "tflite") from None
    return converter, model_builder, ExportConfig


def write(model_dir: Path, folder: Path, precision: str, config, context_length: int, workdir: Path
          ) -> tuple[list[str], dict]:
    """model.tflite at `precision`, and the manifest's `decoder` fields that describe its signatures and cache."""
    converter, model_builder, ExportConfig = _generative_api()
    rope_scaling = getattr(config, "rope_scaling", None)
    if rope_scaling and rope_scaling.get("rope_type", rope_scaling.get("type")) not in (None, "default"):
        raise EdgeftError(f"--format tflite: rope scaling {rope_scaling} is not mapped to litert-torch here; use onnx")
    litert_config = model_config(config, context_length)
    names = model_builder.TENSOR_NAMES if config.tie_word_embeddings else \
        model_builder.TENSOR_NAMES_WITH_SEPARATE_LM_HEAD
    model = model_builder.build_decoder_only_model(str(model_dir), litert_config, names,
                                                   model_builder.DecoderOnlyModel, mask_cache_size=context_length)
    prefill = min(PREFILL_TOKENS, context_length)
    workdir.mkdir(parents=True, exist_ok=True)
    # Logits on prefill: the runtime checks and scores teacher-forced sequences in one call, as for ONNX.
    written = converter.convert_to_tflite(model, str(workdir), "model", prefill_seq_len=prefill,
                                          kv_cache_max_len=context_length, quantize=QUANTIZE[precision],
                                          config=litert_config,
                                          export_config=ExportConfig(output_logits_on_prefill=True))
    Path(written).replace(folder / "model.tflite")
    attention = litert_config.block_config(0).attn_config
    past = [f"kv_cache_{kind}_{layer}" for layer in range(config.num_hidden_layers) for kind in ("k", "v")]
    fields = {
        "kv_heads": int(attention.num_query_groups), "head_dim": int(attention.head_dim),
        "past_names": past, "present_names": past,
        "cache_shape": [1, context_length, int(attention.num_query_groups), int(attention.head_dim)],
        "prefill_signature": f"prefill_{prefill}", "prefill_tokens": prefill, "decode_signature": "decode",
    }
    return ["model.tflite"], fields
