"""FLOP and byte counting from an ONNX graph, against a hand count on the tiny model; the roofline arithmetic."""

from __future__ import annotations

import pytest

from edgeft.bench import flops, roofline
from edgeft.devices import load_profile

BATCH, SEQ, HIDDEN, LAYERS, FFN, LABELS = 2, 16, 32, 2, 64, 3


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """The tiny random classifier exported with torch.onnx.export (dynamic batch and sequence)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from edgeft.models import HeadConfig, SequenceClassifier, load_encoder

    torch.manual_seed(0)
    model = SequenceClassifier(load_encoder("tiny-bert"), HeadConfig(labels=["a", "b", "c"])).eval()
    ids = torch.ones(1, 8, dtype=torch.long)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    torch.onnx.export(model, (ids, torch.ones_like(ids)), str(path), input_names=["input_ids", "attention_mask"],
                      output_names=["logits"], dynamo=False, opset_version=17,
                      dynamic_axes={name: {0: "batch", 1: "sequence"} for name in ["input_ids", "attention_mask"]})
    return path


def test_matmul_flops_match_hand_count(tiny_onnx):
    # setup: per layer Q, K, V, output projections; QK^T and attention x V; the two FFN matrices; then the head
    projections = 4 * 2 * BATCH * SEQ * HIDDEN * HIDDEN
    attention = 2 * 2 * BATCH * SEQ * SEQ * HIDDEN
    ffn = 2 * 2 * BATCH * SEQ * HIDDEN * FFN
    hand = LAYERS * (projections + attention + ffn) + 2 * BATCH * HIDDEN * LABELS
    # execute
    cost = flops.count(tiny_onnx, BATCH, SEQ)
    # assert
    assert cost.matmul_flops == hand
    assert cost.uncounted == []
    assert cost.flops > cost.matmul_flops  # softmax, layer norms, GELU add their share


def test_gather_reads_rows_not_the_table(tiny_onnx):
    cost = flops.count(tiny_onnx, BATCH, SEQ)
    word_embeddings = 30522 * HIDDEN * 4
    assert cost.weight_bytes > word_embeddings
    assert cost.bytes < word_embeddings  # every node together moves less than the table: only rows are read


def test_flops_scale_with_shape(tiny_onnx):
    small, large = flops.count(tiny_onnx, 1, 8), flops.count(tiny_onnx, 4, 8)
    assert large.matmul_flops == pytest.approx(4 * small.matmul_flops, rel=0.01)


def test_roofline_is_the_slower_of_compute_and_memory():
    # setup: one compute-bound node and one memory-bound node on rpi4 (48 GFLOP/s fp32, 12.8 GB/s)
    rpi4 = load_profile("rpi4")
    cost = flops.GraphCost(nodes=[flops.NodeCost("mm", "MatMul", 48e9, 1.0, "fp32"),
                                  flops.NodeCost("copy", "Add", 1.0, 12.8e9, "fp32")], weight_bytes=0)
    calibration = {"efficiency": {"fp32": 0.5}, "overhead_us_per_node": 10.0, "clock_ghz": 3.0}
    # execute
    result = roofline.estimate_ms(cost, rpi4, threads=4, calibration=calibration)
    # assert: 1 s / 0.5 efficiency + 1 s of memory + 2 nodes x 10 us x 3.0/1.5 GHz
    assert result["compute_bound_ms"] == pytest.approx(2000.0)
    assert result["memory_bound_ms"] == pytest.approx(1000.0)
    assert result["overhead_ms"] == pytest.approx(0.04)
    half = roofline.estimate_ms(cost, rpi4, threads=2, calibration=calibration)
    assert half["compute_bound_ms"] == pytest.approx(4000.0)


def test_non_onnx_bundle_is_refused(tmp_path):
    with pytest.raises(flops.EdgeftError, match="ONNX graph"):
        flops.bundle_graph(tmp_path)
