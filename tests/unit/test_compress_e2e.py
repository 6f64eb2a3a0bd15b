"""`edgeft compress --target host` end to end on the tiny model: students, exports, measurements, choice."""

import json

import pytest
from click.testing import CliRunner

from edgeft.cli import main
from edgeft.recipe import validate_recipe
from edgeft.tune import tune


@pytest.fixture
def tiny_run(tiny_recipe):
    tiny_recipe["training"]["epochs"] = 3
    return tune(validate_recipe(tiny_recipe))


def test_compress_host_end_to_end(tiny_run):
    # execute
    result = CliRunner().invoke(main, [
        "compress", str(tiny_run), "--target", "host", "--prune", "heads=0.5,ffn=0.5", "--formats", "onnx",
        "--distill-epochs", "1", "--runs", "5", "--budget-ms", "1000",
    ])
    # assert
    assert result.exit_code == 0, result.output
    folder = tiny_run / "compress" / "host"
    assert {"candidates.json", "best", "pareto.png", "report.md", "bundles"} <= {p.name for p in folder.iterdir()}
    students = sorted(p.name.rsplit("-", 1)[0] for p in (tiny_run / "compress" / "models").iterdir())
    assert students == ["pruned1", "pruned1-distilled", "vocab"]
    data = json.loads((folder / "candidates.json").read_text())
    rows = {row["name"]: row for row in data["candidates"]}
    assert set(rows) == {"pytorch-fp32-eager", *(f"{model}-onnx-{precision}" for model in
                         ("tuned", "vocab", "pruned1", "pruned1-distilled") for precision in ("fp32", "int8"))}
    assert all(row["error"] is None for row in rows.values()), [r["error"] for r in rows.values()]
    assert rows["pytorch-fp32-eager"]["reference"] and rows["tuned-onnx-int8"]["reference"]
    for row in rows.values():
        assert row["eval_rows"] == 30 and 0 <= row["accuracy"] <= 1 and row["p50_ms"] > 0
        assert row["source"].startswith("measured:host")
    assert rows["pruned1-onnx-fp32"]["model_bytes"] < rows["tuned-onnx-fp32"]["model_bytes"]
    assert rows["pruned1-distilled-onnx-fp32"]["chain"] == ["prune(heads=0.5,ffn=0.5)", "vocab", "distill"]
    assert any(row["pareto"] for row in rows.values())
    summary = data["summary"]
    assert summary["best"] in rows and (folder / "best" / "manifest.json").exists()
    assert "Compression report" in (folder / "report.md").read_text()
    assert not list(tiny_run.glob("compress/.*")) and not list(tiny_run.glob("compress/models/.*"))
    # execute again for another target: the students are reused, not rebuilt
    stamps = {p: p.stat().st_mtime_ns for p in (tiny_run / "compress" / "models").rglob("model.safetensors")}
    result = CliRunner().invoke(main, [
        "compress", str(tiny_run), "--target", "host", "--prune", "heads=0.5,ffn=0.5", "--formats", "onnx",
        "--precisions", "int8", "--distill-epochs", "1", "--runs", "5", "--output", str(tiny_run / "again")])
    assert result.exit_code == 0, result.output
    assert stamps == {p: p.stat().st_mtime_ns for p in (tiny_run / "compress" / "models").rglob("model.safetensors")}


def test_print_config_shows_resolved_chain(tiny_run):
    result = CliRunner().invoke(main, ["compress", str(tiny_run), "--print-config", "--prune", "heads=0.2",
                                       "--no-distill", "--formats", "onnx,tflite"])
    assert result.exit_code == 0, result.output
    assert "heads: 0.2" in result.output and "distill: null" in result.output
    assert "- tflite" in result.output


def test_bad_flags_exit_2(tiny_run):
    result = CliRunner().invoke(main, ["compress", str(tiny_run), "--prune", "heads=2", "--print-config"])
    assert result.exit_code == 2 and "heads" in result.output
    result = CliRunner().invoke(main, ["compress", str(tiny_run), "--formats", "coreml", "--print-config"])
    assert result.exit_code == 2 and "compress.formats.0" in result.output
