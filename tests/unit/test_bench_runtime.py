"""The device-side timing loop (`edgeft.runtime.bench`) with a small fake predictor: fields and their sanity."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edgeft.runtime import bench as runtime_bench


class FakePredictor:
    """Encodes by word count and 'runs' with a little numpy work, like a real Predictor's raw call."""

    manifest = {"format": "onnx", "precision": "fp32", "self_check": {"texts": ["a b c", "a b c d e f"]}}
    runtime_versions = {"fake": "1.0"}

    def __init__(self):
        self.calls = 0
        self.weight = np.ones((64, 64), np.float32)

    def encode(self, texts):
        length = max(len(text.split()) for text in texts) + 2
        return {"input_ids": np.ones((len(texts), length), np.int64)}

    def run(self, encoded):
        self.calls += 1
        rows = encoded["input_ids"].shape[0]
        return np.ones((rows, 64), np.float32) @ self.weight

    def self_check(self):
        return None


def test_report_fields_and_order():
    # setup
    predictor = FakePredictor()
    # execute
    report = runtime_bench.measure(lambda: predictor, runs=20, warmup=3, batch=2)
    # assert
    assert report["p50_ms"] <= report["p90_ms"] <= report["p99_ms"] <= report["max_ms"]
    assert report["min_ms"] <= report["p50_ms"]
    assert report["throughput_per_s"] > 0 and report["load_ms"] >= 0 and report["first_inference_ms"] > 0
    assert report["peak_rss_mb"] > 0
    assert predictor.calls == 1 + 3 + 20
    assert report["input_shape"] == [2, 8]  # the longest reference text: 6 words + [CLS] + [SEP]
    assert report["runtime_versions"] == {"fake": "1.0"}
    assert report["self_check"] == "passed"
    assert report["machine"]["cpu"]


def test_seq_len_gives_exact_length_texts():
    texts = runtime_bench.sample_texts(batch=3, seq_len=40, manifest={})
    assert len(texts) == 3 and all(len(text.split()) == 38 for text in texts)


def test_percentiles():
    stats = runtime_bench.percentiles([float(value) for value in range(1, 101)])
    assert stats["p50_ms"] == pytest.approx(50.5) and stats["p99_ms"] == pytest.approx(99.01)
    assert stats["mean_ms"] == pytest.approx(50.5)


def test_imports_nothing_heavy():
    # The device runtime must not pull in the toolchain: run in a fresh interpreter and list what got imported.
    code = ("import sys, edgeft.runtime.bench; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'onnx', 'pandas'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_bad_options_exit_2(tmp_path):
    with pytest.raises(SystemExit) as caught:
        runtime_bench.main([str(tmp_path), "--runs", "0"])
    assert caught.value.code == 2
