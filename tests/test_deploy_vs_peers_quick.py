"""`python -m benchmarks.deploy_vs_peers --quick`: the whole comparison on a tiny model (every peer built and run,
every row scored and timed under the protocol, the JSON written). A smoke test: no timing is asserted."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROWS = {"pytorch-fp32", "pytorch-dynamic-int8", "optimum-ort-dynamic-int8", "optimum-intel-openvino-int8",
        "litert-dynamic-int8", "edgeft:onnx-int8"}


@pytest.mark.slow
def test_quick_mode_writes_every_row(tmp_path):
    # execute
    done = subprocess.run([sys.executable, "-m", "benchmarks.deploy_vs_peers", "--quick", "--work", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=1500)
    # assert
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "deploy_vs_peers.json").read_text())
    names = {row["name"] for row in result["rows"]}
    assert names == ROWS | {"edgeft:onnx-int8 (A/A)"}
    assert {row["batch"] for row in result["rows"]} == {1, 8}
    for row in result["rows"]:
        assert 0 <= row["accuracy"] <= 1 and row["eval_rows"] == 120  # quickstart's test split
        assert row["p50_ci_ms"][0] <= row["p50_ms"] <= row["p50_ci_ms"][1] and row["bytes"] > 0
        assert row["ratio_vs_pytorch_fp32"]["ci"][0] <= row["ratio_vs_pytorch_fp32"]["value"]
        assert row["peak_rss_mb"] > 0
    litert = next(row for row in result["rows"] if row["name"] == "litert-dynamic-int8" and row["batch"] == 1)
    assert litert["padded_lengths"] == [64]  # the fixed shape it was converted at: quickstart's max_length
    raw = result["raw"]["1"]["pytorch-fp32"]
    assert len(raw) == 2 and all(len(entry["latencies_ms"]) >= 20 for entry in raw)
    assert result["machine"]["cpu"] and len(result["machine"]["loadavg_before"]) == 3
    assert "pytorch-fp32" in done.stdout and "bar (batch 1)" in done.stdout
