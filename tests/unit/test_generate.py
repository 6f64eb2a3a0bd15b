"""The causal-LM bundle: export a tiny random Llama with a KV cache, generate without torch, compare with PyTorch."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("optimum.exporters.onnx")

from edgeft.decoders import TINY_LLAMA, load_decoder, load_decoder_tokenizer  # noqa: E402
from edgeft.export.decoder import export_decoder, torch_greedy  # noqa: E402
from edgeft.runtime.bundle import BundleError  # noqa: E402
from edgeft.runtime.generate import PromptTooLong, load_generator, pick_token  # noqa: E402

EXAMPLES = [
    ("name[The Eagle], food[French]", "The Eagle serves French food."),
    ("name[Alimentum], area[city centre]", "Alimentum is in the city centre."),
    ("name[The Mill], priceRange[cheap]", "The Mill is cheap."),
]
PROMPT_FORMAT = "MR: {prompt}\nText:"
CONTEXT = 48


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = load_decoder_tokenizer(TINY_LLAMA)
    load_decoder(TINY_LLAMA, vocab_size=len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def onnx_fp32(tiny_llama_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("bundles") / "onnx-fp32"
    return export_decoder(tiny_llama_dir, "onnx", "fp32", output, examples=EXAMPLES, prompt_format=PROMPT_FORMAT,
                          context_length=CONTEXT, progress=False)


def test_fp32_bundle_greedy_equals_pytorch_token_by_token(tiny_llama_dir, onnx_fp32):
    # setup
    model = load_decoder(tiny_llama_dir)
    generator = load_generator(onnx_fp32)
    ids = generator.encode("name[The Wrestlers], food[Italian]")
    # execute
    expected = torch_greedy(model, ids, generator.eos_ids, 24, generator.context_length)
    got = list(generator.token_stream(ids, 24))
    # assert: the same ids, and varied enough that equality says something
    assert got == expected
    assert len(set(got)) >= 3
    manifest = json.loads((onnx_fp32 / "manifest.json").read_text())
    assert manifest["task"] == "causal-lm"
    assert manifest["verification"]["greedy"]["identical"] == len(EXAMPLES)
    assert manifest["verification"]["teacher_forced"]["max_abs_diff"] < 1e-4


def test_stream_pieces_join_to_the_decoded_greedy_text(onnx_fp32):
    generator = load_generator(onnx_fp32)
    ids = list(generator.token_stream(generator.encode("name[The Eagle]"), 20))
    pieces = list(generator.stream("name[The Eagle]", max_new_tokens=20))
    assert "".join(pieces) == generator.tokenizer.decode(ids, skip_special_tokens=True)
    assert len(pieces) > 1  # streamed, not returned at the end


def test_stop_string_ends_generation_before_it(onnx_fp32):
    generator = load_generator(onnx_fp32)
    full = generator.generate("name[The Eagle]", max_new_tokens=20)
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    cut = generator.generate("name[The Eagle]", max_new_tokens=20, stop=[stop])
    assert cut == full[: full.index(stop)]


def test_prompt_longer_than_context_is_refused(onnx_fp32):
    generator = load_generator(onnx_fp32)
    with pytest.raises(PromptTooLong, match=f"context holds {CONTEXT} tokens"):
        generator.generate("word " * 200)


def test_generation_stops_at_the_context(onnx_fp32):
    generator = load_generator(onnx_fp32)
    ids = generator.encode("name[The Eagle]")
    assert len(list(generator.token_stream(ids, 500))) <= CONTEXT - len(ids)


def test_sampling_is_seeded_and_top_p_keeps_the_nucleus():
    logits = np.array([5.0, 4.0, 0.0, -1.0])
    rng = np.random.default_rng(0)
    # top_p 0.5: only the most likely token (p = 0.72) is kept
    assert {pick_token(logits, 1.0, 0.5, rng) for _ in range(50)} == {0}
    # top_p 0.95: the two leading tokens (0.72 + 0.26) and never the tail
    picked = {pick_token(logits, 1.0, 0.95, rng) for _ in range(200)}
    assert picked == {0, 1}
    assert pick_token(logits, 0.0, 1.0, rng) == 0


def test_tampered_bundle_is_refused(onnx_fp32, tmp_path):
    import shutil

    copy = shutil.copytree(onnx_fp32, tmp_path / "copy")
    data = bytearray((copy / "tokenizer.json").read_bytes())
    data[-3] ^= 1
    (copy / "tokenizer.json").write_bytes(bytes(data))
    with pytest.raises(BundleError):
        load_generator(copy)


@pytest.mark.parametrize("format_, precision", [("onnx", "int4"), ("onnx", "int4-genai"), ("openvino", "int8")])
def test_quantized_bundles_are_verified(tiny_llama_dir, tmp_path, format_, precision):
    needs = {"openvino": "nncf", "onnx": "onnxruntime_genai" if "genai" in precision else "onnxruntime"}
    pytest.importorskip(needs[format_])
    # A random model's near-tied logits flip easily under quantization: the bar here is low, the report exact.
    output = export_decoder(tiny_llama_dir, format_, precision, tmp_path / "b", examples=EXAMPLES,
                            prompt_format=PROMPT_FORMAT, context_length=CONTEXT, min_agreement=0.3, progress=False)
    verification = json.loads((output / "manifest.json").read_text())["verification"]
    assert verification["passed"]
    assert 0 < verification["teacher_forced"]["max_abs_diff"] < 5.0  # quantized: close, not identical
    assert load_generator(output).generate("name[The Eagle]", max_new_tokens=5) is not None
    manifest = json.loads((output / "manifest.json").read_text())
    if precision == "int4-genai":  # the builder's graph: fused attention, positions from the attention mask
        assert [item["name"] for item in manifest["inputs"]] == ["input_ids", "attention_mask"]
        import onnx

        ops = {node.op_type for node in onnx.load(str(output / "model.onnx"), load_external_data=False).graph.node}
        assert {"GroupQueryAttention", "MatMulNBits"} <= ops


def test_a_bundle_below_min_agreement_is_not_written(tiny_llama_dir, tmp_path):
    from edgeft.errors import EdgeftError

    with pytest.raises(EdgeftError, match="no bundle was written") as error:
        export_decoder(tiny_llama_dir, "onnx", "int4", tmp_path / "b", examples=EXAMPLES,
                       prompt_format=PROMPT_FORMAT, context_length=CONTEXT, min_agreement=1.0, progress=False)
    assert error.value.exit_code == 1
    assert not (tmp_path / "b").exists()


def test_generation_bench_decodes_the_stated_length_in_fresh_processes(onnx_fp32, tmp_path):
    from click.testing import CliRunner

    from edgeft.cli import main

    # execute: two interleaved rounds, each a fresh light-runtime process generating once past any eos
    result = CliRunner().invoke(main, ["bench", str(onnx_fp32), "--rounds", "2", "--new-tokens", "8", "--seq-len",
                                       "10", "--json", str(tmp_path / "bench.json")])
    # assert
    assert result.exit_code == 0, result.output
    assert "decode tok/s" in result.output
    (report,) = json.loads((tmp_path / "bench.json").read_text())
    assert report["rounds"] == 2 and report["prompt_tokens"] == 10
    assert all(sample["new_tokens"] == 8 for run in report["raw"] for sample in run["samples"])
    decode = report["decode_tokens_per_s"]["p50"]
    assert decode["ci"][0] <= decode["value"] <= decode["ci"][1] and decode["value"] > 0
    assert report["peak_rss_mb"] > 0


def test_tflite_bundle_runs_prefill_in_chunks_and_decodes_like_pytorch(tiny_llama_dir, tmp_path, monkeypatch):
    pytest.importorskip("litert_torch")
    from edgeft.export import decoder_tflite

    # setup: prefill chunks of 16 tokens, so prompts (~20-40 tokens) take full chunks and an overlapping last one
    monkeypatch.setattr(decoder_tflite, "PREFILL_TOKENS", 16)
    bundle = export_decoder(tiny_llama_dir, "tflite", "fp32", tmp_path / "tflite-fp32", examples=EXAMPLES,
                            prompt_format=PROMPT_FORMAT, context_length=CONTEXT, progress=False)
    model, generator = load_decoder(tiny_llama_dir), load_generator(bundle)
    ids = generator.encode("name[The Wrestlers], food[Italian], area[riverside]")
    assert len(ids) > 16 and len(ids) % 16 and len(ids) + 8 <= CONTEXT  # full chunks, then an overlapping one
    # execute
    expected = torch_greedy(model, ids, generator.eos_ids, 8, generator.context_length)
    got = list(generator.token_stream(ids, 8))
    # assert: token by token, and the manifest's own check passed on every example
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert got == expected and len(set(got)) >= 3
    assert manifest["decoder"]["prefill_signature"] == "prefill_16" and manifest["decoder"]["cache_shape"][1] == CONTEXT
    assert manifest["verification"]["greedy"]["identical"] == len(EXAMPLES)
    assert manifest["verification"]["teacher_forced"]["max_abs_diff"] < 1e-3


def test_tflite_int8_bundle_is_verified(tiny_llama_dir, tmp_path):
    pytest.importorskip("litert_torch")
    bundle = export_decoder(tiny_llama_dir, "tflite", "int8", tmp_path / "tflite-int8", examples=EXAMPLES,
                            prompt_format=PROMPT_FORMAT, context_length=CONTEXT, progress=False)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["verification"]["passed"] and manifest["verification"]["top1_agreement"] >= 0.8
    assert load_generator(bundle).generate("name[The Eagle]", max_new_tokens=8)
