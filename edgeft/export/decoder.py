"""Export a causal LM to a verified generation bundle: an ONNX decoder with a KV cache, OpenVINO IR made from it, or
TFLite with prefill/decode signatures (`edgeft.export.decoder_tflite`, litert-torch's generative path).

optimum exports the decoder-with-past graph (`text-generation-with-past`); ONNX Runtime's quantizers make the int8
(dynamic) and int4 (MatMulNBits) variants, NNCF the OpenVINO int8/int4 weight compression. `int4-genai` starts
from onnxruntime-genai's model builder instead: its own graph with fused attention (GroupQueryAttention, rotary and
norms fused), quantized the same way as `int4`; same inputs (less `position_ids`) and cache layout, same loop.
Every bundle is run in `edgeft.runtime`'s generation loop and compared with the PyTorch model before it is written:
teacher-forced logits on real prompt + completion sequences (top-1 agreement, max abs diff) and greedy generations
token by token.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import edgeft
from edgeft.atomic import promote
from edgeft.decoders import GENERATION_FILE
from edgeft.errors import EdgeftError, missing_extra
from edgeft.export import decoder_tflite, lora_branches
from edgeft.export import onnx as onnx_export
from edgeft.export import openvino as openvino_export
from edgeft.export.source import RECIPE_LOCK, read_lock
from edgeft.runtime.bundle import MANIFEST, TOKENIZER, describe_files
from edgeft.runtime.tokenize import save_tokenizer

PRECISIONS = {"onnx": ("fp32", "int8", "int4", "int4-genai", "int4-lora"),
              "openvino": ("fp32", "fp16", "int8", "int4"), "tflite": decoder_tflite.PRECISIONS}
TASK = "causal-lm"
INPUT_NAMES = ("input_ids", "attention_mask", "position_ids")
# fp32 graphs reproduce PyTorch up to kernel rounding (optimum measured 2.6e-3 on SmolLM2's logits, STACK.md).
FP32_MAX_ABS_DIFF = 1e-2
SELF_CHECK_TOKENS = 32
CONTEXT_LIMIT = 1 << 20  # no limit of ours: the bundle's context is the model's (max_position_embeddings)


def export_decoder(
    model_dir: Path,
    format: str,
    precision: str,
    output: Path,
    *,
    examples: list[tuple[str, str]],
    prompt_format: str,
    context_length: int,
    max_new_tokens: int = 32,
    scoring_tokens: int = 64,
    cache_tokens: int = 512,
    greedy_prompts: int = 8,
    min_agreement: float = 0.8,
    progress: bool = True,
) -> Path:
    """Export, verify against PyTorch and atomically write one generation bundle.

    Args:
        model_dir: a plain HF causal-LM folder (weights, config, tokenizer), e.g. a run's `merged/`.
        format, precision: one of PRECISIONS.
        output: the bundle folder (replaced if it is a bundle).
        examples: real (prompt, completion) pairs; teacher-forced logits are compared on all, greedy generations
            on the first `greedy_prompts`.
        prompt_format: how a prompt becomes the model's input text; `{prompt}` marks the prompt.
        context_length: the most tokens (prompt + generated) the bundle accepts.
        max_new_tokens: greedy tokens compared per prompt.
        scoring_tokens: the generation length quality is scored at (the recipe's `generation.max_new_tokens`),
            recorded in the manifest for the bundle's own evaluation.
        cache_tokens: TFLite only: the fixed KV-cache size, which becomes the bundle's context.
        min_agreement: teacher-forced top-1 agreement a quantized bundle needs (fp32: equal greedy output and
            logits within FP32_MAX_ABS_DIFF).

    Raises:
        EdgeftError: bad arguments (exit 2), or a bundle that fails verification (exit 1).
    """
    if format not in PRECISIONS or precision not in PRECISIONS[format]:
        offered = "; ".join(f"{name}: {', '.join(values)}" for name, values in PRECISIONS.items())
        raise EdgeftError(f"--format/--precision: a causal LM exports to {offered} (got {format} {precision})")
    if not examples:
        raise EdgeftError("no verification examples: a causal-LM export needs real prompts")
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from transformers import AutoTokenizer

    from edgeft.decoders import load_decoder

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = load_decoder(model_dir)
    context_length = min(context_length, int(model.config.max_position_embeddings))
    output.parent.mkdir(parents=True, exist_ok=True)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.name}.tmp-") as tmp, Progress(
        *columns, transient=True, disable=not progress
    ) as bar:
        stage, workdir = Path(tmp) / "bundle", Path(tmp) / "work"
        stage.mkdir()
        step = bar.add_task(f"exporting {format} {precision} (decoder with KV cache)")
        if format == "tflite":  # its own graph builder and a fixed cache: no ONNX in between
            context_length = min(context_length, cache_tokens)
            files, fields = decoder_tflite.write(model_dir, stage, precision, model.config, context_length, workdir)
            section = {**decoder_section(model.config, tokenizer, prompt_format, context_length), **fields}
            inputs = INPUT_NAMES
        else:
            if format == "onnx" and precision in ("int4-genai", "int4-lora"):
                files = write_onnx_genai(model_dir, stage, workdir, lora=precision == "int4-lora")
            else:
                files = WRITERS[format](export_onnx_fp32(model_dir, workdir), stage, precision)
            inputs, names = graph_names(stage / files[0] if format == "onnx" else workdir / "model.onnx")
            section = {**decoder_section(model.config, tokenizer, prompt_format, context_length), **names}
        save_tokenizer(tokenizer, stage / TOKENIZER)
        manifest = {
            "task": TASK,
            "format": format,
            "precision": precision,
            "files": describe_files(stage, [*files, TOKENIZER]),
            "labels": None,  # generates text; no classes
            "max_length": context_length,
            "inputs": [{"name": name, "dtype": "int64", "shape": ["batch", "sequence"]} for name in inputs],
            "outputs": [{"name": "logits", "shape": ["batch", "sequence", "vocab"]}],
            "runtime_config": openvino_export.FP32_CONFIG if (format, precision) == ("openvino", "fp32") else {},
            "tokenizer": {"max_length": context_length, "add_special_tokens": False,
                          "pad_id": int(tokenizer.pad_token_id or 0), "pad_token": tokenizer.pad_token},
            "decoder": {**section, "max_new_tokens": scoring_tokens},
            "source": {"model_dir": str(model_dir), "weights": describe_files(
                model_dir, [p.name for p in sorted(model_dir.glob("*.safetensors"))])},
            "edgeft_version": edgeft.__version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        _write_manifest(stage, manifest)

        bar.update(step, description=f"verifying {format} {precision} against PyTorch on {len(examples)} examples")
        from edgeft.runtime.generate import load_generator

        generator = load_generator(stage, self_check=False)
        sequences = [_sequence(generator, prompt, completion) for prompt, completion in examples]
        verification = verify(model, generator, sequences, examples[:greedy_prompts], max_new_tokens)
        verification = judge(verification, precision, min_agreement)
        verification["inputs_sha256"] = hashlib.sha256(json.dumps(examples).encode()).hexdigest()
        if not verification["passed"]:
            raise EdgeftError(_failure(format, precision, verification), exit_code=1)
        manifest["verification"] = verification
        manifest["decoder"]["self_check"] = self_check_entry(generator, sequences[0], verification)
        _write_manifest(stage, manifest)
        promote(stage, output)
    return output


def decoder_run(source: str | Path) -> tuple[Path, Path | None] | None:
    """(merged model folder, run folder or None) when `source` is a causal-LM run or its `merged/`, else None."""
    path = Path(source).expanduser().resolve()
    if (path / "merged" / GENERATION_FILE).is_file():
        return path / "merged", path
    if (path / GENERATION_FILE).is_file():
        return path, path.parent if (path.parent / RECIPE_LOCK).is_file() else None
    return None


def export_run(source: str | Path, format: str, precision: str, output: str | Path | None = None, *,
               min_agreement: float = 0.8, n_verify: int = 64, progress: bool = True) -> Path:
    """Export a causal-LM run (`edgeft tune` with `model.task: causal-lm`) to `RUN/bundles/<format>-<precision>`,
    verified on real (prompt, first reference) pairs of its recipe's test split (validation when it has none)."""
    from edgeft.tasks import get_task

    model_dir, run_dir = decoder_run(source)
    settings = json.loads((model_dir / GENERATION_FILE).read_text())
    if run_dir is None:
        raise EdgeftError(f"{model_dir}: no {RECIPE_LOCK} beside it to take real prompts from; export the run folder")
    recipe = read_lock(run_dir / RECIPE_LOCK)
    task = get_task("causal-lm")
    splits = task.load_splits(recipe.data, recipe.training.seed)
    examples = [(prompt, refs[0]) for prompt, refs in task.examples(splits.test if splits.test is not None else splits.validation)][:n_verify]
    output = Path(output) if output else run_dir / "bundles" / f"{format}-{precision}"
    if output.exists() and not (output / MANIFEST).is_file():
        raise EdgeftError(f"--output: {output} exists and is not a bundle; choose another folder")
    return export_decoder(model_dir, format, precision, output, examples=examples,
                          prompt_format=settings["prompt_format"], context_length=CONTEXT_LIMIT,
                          max_new_tokens=min(settings["max_new_tokens"], 32),
                          scoring_tokens=settings["max_new_tokens"], min_agreement=min_agreement,
                          cache_tokens=decoder_tflite.cache_length(settings["max_length"], settings["max_new_tokens"],
                                                                   CONTEXT_LIMIT),
                          progress=progress)


def export_onnx_fp32(model_dir: Path, workdir: Path) -> Path:
    """optimum's decoder-with-past ONNX export of an HF folder (validation is ours, on real prompts)."""
    try:
        from optimum.exporters.onnx import main_export
    except ImportError:
        raise missing_extra("Causal-LM ONNX export", "export") from None
    main_export(str(model_dir), str(workdir), task="text-generation-with-past", do_validation=False,
                no_post_process=True)
    return workdir / "model.onnx"


def write_onnx(float_onnx: Path, folder: Path, precision: str) -> list[str]:
    """model.onnx at `precision` (ORT dynamic int8, or int4 MatMulNBits weight-only)."""
    if precision == "fp32":
        shutil.copy2(float_onnx, folder / "model.onnx")
    else:
        onnx_export.QUANTIZERS[precision](float_onnx, folder / "model.onnx")
    return ["model.onnx"]


def write_openvino(float_onnx: Path, folder: Path, precision: str) -> list[str]:
    """model.xml + model.bin converted from the ONNX decoder; fp16 storage, or NNCF int8/int4 weight compression."""
    model = openvino_export.convert(float_onnx)
    if precision in ("int8", "int4"):
        model = openvino_export.compress_weights(model, bits=int(precision[-1]))
    openvino_export._ov().save_model(model, str(folder / "model.xml"), compress_to_fp16=precision == "fp16")
    return ["model.xml", "model.bin"]


WRITERS = {"onnx": write_onnx, "openvino": write_openvino}
def write_onnx_genai(model_dir: Path, folder: Path, workdir: Path, lora: bool = False) -> list[str]:
    """model.onnx from onnxruntime-genai's model builder (fp32 graph with fused attention), its weights quantized by
    edgeft's int4 quantizer (`edgeft.export.onnx.quantize_int4`: HQQ blocks, integer zero points, 8-bit LM head).
    `lora`: the graph and int4 weights of the adapter's base model, the run's LoRA update added beside them in fp32
    (`edgeft.export.lora_branches`; the adapter is `adapter/` beside `model_dir`, a run's `merged/`).
    The builder's own int4 (round-to-nearest or k-quant, integer zero points) agreed with PyTorch on 77% of
    SmolLM2's next tokens, like every integer-zero-point grid on these GGUF-derived weights."""
    updates = lora_branches.read_adapter(model_dir.parent / "adapter") if lora else None
    base = lora_branches.write_base(model_dir, updates, workdir / "base") if lora else model_dir
    onnx_export.quantize_int4(build_genai_fp32(base, workdir / "genai"), folder / "model.onnx")
    if updates:
        import onnx

        model = lora_branches.add_branches(onnx.load(str(folder / "model.onnx")), updates)
        onnx.save_model(model, str(folder / "model.onnx"))
    return ["model.onnx"]


def build_genai_fp32(model_dir: Path, output: Path) -> Path:
    """onnxruntime-genai's model builder on an HF folder: its fp32 CPU graph (model.onnx + model.onnx.data). It runs
    in a child process: it prints progress bars and configures logging; its output is shown only when it fails."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("onnxruntime_genai") is None:
        raise missing_extra("ONNX int4-genai export (onnxruntime-genai's model builder)", "export")
    command = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(model_dir), "-o", str(output),
               "-p", "fp32", "-e", "cpu", "-c", str(output.parent / "genai-cache")]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        tail = " | ".join((result.stdout + result.stderr).strip().splitlines()[-3:])
        raise EdgeftError(f"onnxruntime-genai's model builder failed on {model_dir}: {tail}", exit_code=1)
    return output / "model.onnx"


def decoder_section(config, tokenizer, prompt_format: str, context_length: int) -> dict:
    """The manifest's `decoder` mapping: what the generation loop needs besides the graph and its cache names."""
    eos = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
    eos = sorted({int(i) for i in eos if i is not None} | {int(tokenizer.eos_token_id)})
    return {
        "context_length": int(context_length),
        "prompt_format": prompt_format,
        "eos_ids": eos,
        "kv_heads": int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads),
        "head_dim": int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads),
    }


def graph_names(onnx_file: Path) -> tuple[list[str], dict]:
    """A decoder-with-past graph's token inputs (the genai builder's has no `position_ids`), and its past (input)
    and present (output) cache tensors in layer order (optimum and the builder use the same names)."""
    import onnx

    graph = onnx.load(str(onnx_file), load_external_data=False).graph
    names = [item.name for item in graph.input]
    past = [name for name in names if name.startswith("past_key_values.")]
    cache = {"past_names": past, "present_names": [name.replace("past_key_values.", "present.") for name in past]}
    return [name for name in INPUT_NAMES if name in names], cache


def _sequence(generator, prompt: str, completion: str) -> tuple[list[int], int]:
    """Prompt + completion ids (cut to the context) and where the completion starts."""
    prompt_ids = generator.encode(prompt)
    ids = prompt_ids + generator.tokenizer.encode(completion, add_special_tokens=False).ids
    return ids[: generator.context_length - 1], len(prompt_ids)


def verify(model, generator, sequences, greedy_examples, max_new_tokens: int) -> dict:
    """Teacher-forced logits (completion positions) and greedy generations of the bundle vs PyTorch."""
    import torch

    diffs, agree, positions = [], 0, 0
    with torch.inference_mode():
        for ids, start in sequences:
            reference = model(torch.tensor([ids])).logits[0].float().numpy()
            candidate = generator.logits(ids)
            span = slice(max(start - 1, 0), len(ids))  # the positions that predict completion tokens
            diffs.append(float(np.abs(reference[span] - candidate[span]).max()))
            agree += int((reference[span].argmax(-1) == candidate[span].argmax(-1)).sum())
            positions += len(ids) - span.start
        same, prefix = 0, []
        for prompt, _ in greedy_examples:
            ids = generator.encode(prompt)
            expected = torch_greedy(model, ids, generator.eos_ids, max_new_tokens, generator.context_length)
            got = list(generator.token_stream(ids, max_new_tokens))
            same += int(got == expected)
            prefix.append(next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected))))
    return {
        "teacher_forced": {"sequences": len(sequences), "positions": positions,
                           "top1_agreement": agree / max(positions, 1), "max_abs_diff": max(diffs)},
        "greedy": {"prompts": len(greedy_examples), "max_new_tokens": max_new_tokens, "identical": same,
                   "mean_common_prefix_tokens": float(np.mean(prefix)) if prefix else 0.0},
        "n_inputs": positions,  # prediction rows compared: completion positions
        "texts": len(sequences),
        "top1_agreement": agree / max(positions, 1),
        "max_abs_diff": max(diffs),
    }


def torch_greedy(model, ids: list[int], eos_ids, max_new_tokens: int, context_length: int) -> list[int]:
    """PyTorch's own greedy decoding (`generate`), without the eos token, capped at the bundle's context."""
    import torch

    limit = min(max_new_tokens, context_length - len(ids))
    inputs = torch.tensor([ids])
    out = model.generate(inputs, attention_mask=torch.ones_like(inputs), max_new_tokens=limit, do_sample=False,
                         eos_token_id=list(eos_ids), pad_token_id=min(eos_ids))
    new = out[0, len(ids):].tolist()
    return next((new[:i] for i, token in enumerate(new) if token in eos_ids), new)


def judge(result: dict, precision: str, min_agreement: float) -> dict:
    """fp32 must give PyTorch's greedy output and near-equal logits; quantized bundles their top-1 agreement."""
    if precision == "fp32":
        passed = result["greedy"]["identical"] == result["greedy"]["prompts"] and \
            result["max_abs_diff"] <= FP32_MAX_ABS_DIFF
        tolerance = {"max_abs_diff": FP32_MAX_ABS_DIFF, "greedy_identical": "all"}
    else:
        passed = result["top1_agreement"] >= min_agreement
        tolerance = {"top1_agreement": min_agreement}
    return {**result, "tolerance": tolerance, "passed": bool(passed)}


def self_check_entry(generator, sequence: tuple[list[int], int], verification: dict) -> dict:
    """A reference sequence and this bundle's own top-1 ids and logits for it on the export host."""
    ids = sequence[0][:SELF_CHECK_TOKENS]
    logits = generator.logits(ids)
    top1 = logits.argmax(axis=-1)
    return {
        "ids": ids,
        "top1": top1.tolist(),
        "top1_logits": logits[np.arange(len(ids)), top1].round(5).tolist(),
        "tolerance": max(FP32_MAX_ABS_DIFF, 2.0 * verification["max_abs_diff"]),
        "min_top1_agreement": 0.9,
    }


def _write_manifest(folder: Path, manifest: dict) -> None:
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def _failure(format: str, precision: str, verification: dict) -> list[str]:
    greedy = verification["greedy"]
    return [
        f"{format} {precision} failed verification against PyTorch: teacher-forced top-1 agreement "
        f"{verification['top1_agreement']:.2%} over {verification['teacher_forced']['positions']} positions, "
        f"max abs logit diff {verification['max_abs_diff']:.3g}, greedy output identical for "
        f"{greedy['identical']} of {greedy['prompts']} prompts (needs {verification['tolerance']})",
        "no bundle was written" + ("; lower --min-agreement to accept it" if precision != "fp32" else ""),
    ]

