"""Tuning methods: each turns a pretrained encoder into one whose chosen parameters train. peft does the work."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from edgeft.errors import EdgeftError
from edgeft.recipe import MethodSpec

# All attention and FFN projections: on MiniLM this beat query/value only (see ../shared/STACK.md calibration).
LORA_TARGETS = {
    "bert": ["query", "key", "value", "dense"],
    "roberta": ["query", "key", "value", "dense"],
    "xlm-roberta": ["query", "key", "value", "dense"],
    "distilbert": ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"],
    "electra": ["query", "key", "value", "dense"],
}
MERGEABLE = {"lora", "dora", "ia3"}


def _lora(encoder: nn.Module, spec: MethodSpec, use_dora: bool = False) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    if spec.adapter is not None:
        return _saved_lora(encoder, spec, use_dora)
    targets = LORA_TARGETS.get(encoder.config.model_type, "all-linear")
    config = LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=targets if spec.target_modules == "auto" else spec.target_modules,
        use_dora=use_dora,
    )
    return get_peft_model(encoder, config)


def _saved_lora(encoder: nn.Module, spec: MethodSpec, use_dora: bool) -> nn.Module:
    """The encoder with a saved LoRA/DoRA adapter loaded trainable (the recipe's dropout applies)."""
    from peft import PeftConfig, PeftModel

    folder = Path(spec.adapter)
    if not (folder / "adapter_config.json").is_file():
        raise EdgeftError(f"method.adapter: {folder} has no adapter_config.json (expected a run's adapter/ folder)")
    config = PeftConfig.from_pretrained(folder)
    saved = (getattr(config, "r", None), getattr(config, "lora_alpha", None), bool(getattr(config, "use_dora", False)))
    if saved != (spec.r, spec.alpha, use_dora):
        raise EdgeftError(f"method.adapter: {folder} holds r={saved[0]}, alpha={saved[1]}, dora={saved[2]}; the "
                          f"recipe says r={spec.r}, alpha={spec.alpha}, dora={use_dora}")
    config.lora_dropout = spec.dropout
    try:
        return PeftModel.from_pretrained(encoder, folder, config=config, is_trainable=True)
    except (RuntimeError, ValueError, KeyError) as error:  # shapes or module names of another base model
        raise EdgeftError(f"method.adapter: {folder} does not fit model.name's weights: {error}") from None


def _ia3(encoder: nn.Module, spec: MethodSpec) -> nn.Module:
    from peft import IA3Config, get_peft_model
    from peft.utils import TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as FEEDFORWARD
    from peft.utils import TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as TARGETS

    model_type = encoder.config.model_type
    if spec.target_modules == "auto":
        config = IA3Config(target_modules=TARGETS[model_type], feedforward_modules=FEEDFORWARD[model_type])
    else:
        config = IA3Config(target_modules=spec.target_modules, feedforward_modules=[])
    return get_peft_model(encoder, config)


def _prefix(encoder: nn.Module, spec: MethodSpec, projection: bool) -> nn.Module:
    from peft import PrefixTuningConfig, TaskType, get_peft_model

    # P-Tuning v2 is deep prompt tuning: trained key/value prefixes at every layer, no reparameterisation MLP.
    config = PrefixTuningConfig(
        task_type=TaskType.FEATURE_EXTRACTION,
        num_virtual_tokens=spec.num_virtual_tokens,
        prefix_projection=projection,
    )
    return get_peft_model(encoder, config)


def _full(encoder: nn.Module, spec: MethodSpec) -> nn.Module:
    encoder.requires_grad_(True)
    return encoder


def _head_only(encoder: nn.Module, spec: MethodSpec) -> nn.Module:
    encoder.requires_grad_(False)
    return encoder


METHODS = {
    "lora": _lora,
    "dora": lambda encoder, spec: _lora(encoder, spec, use_dora=True),
    "ia3": _ia3,
    "prefix": lambda encoder, spec: _prefix(encoder, spec, projection=True),
    "ptuning-v2": lambda encoder, spec: _prefix(encoder, spec, projection=False),
    "full": _full,
    "head-only": _head_only,
}


def apply_method(encoder: nn.Module, spec: MethodSpec) -> nn.Module:
    """The encoder prepared for `spec.kind`: a peft model, or the encoder with its weights (un)frozen."""
    return METHODS[spec.kind](encoder, spec)
