"""Safety nets across the package: no unsafe deserialisation in the source, SSH to an unreachable device fails fast,
an unknown hub model fails fast offline, and a second `tune` into a folder being written is refused."""

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_recipe

from edgeft.cli import main
from edgeft.errors import EdgeftError

PACKAGE = Path(__file__).resolve().parents[2] / "edgeft"
UNSAFE = {
    "pickle": re.compile(r"^\s*(import pickle\b|from pickle import|import (c|_)?pickle\b)|\bpickle\.loads?\(|\bdill\b|"
                         r"\bjoblib\.load\(|\bcloudpickle\b", re.M),
    "torch.load without weights_only=True": re.compile(r"torch\.load\((?![^)]*weights_only\s*=\s*True)[^)]*\)"),
    "trust_remote_code=True": re.compile(r"trust_remote_code\s*=\s*True"),
    "yaml.load without a safe loader": re.compile(
        r"yaml\.(unsafe_load|full_load|load_all)\(|yaml\.load\((?![^)]*Loader\s*=\s*(yaml\.)?(Safe|CSafe|UniqueKey)\w*)"),
    "numpy allow_pickle=True": re.compile(r"allow_pickle\s*=\s*True"),
}


def test_no_unsafe_deserialisation_in_the_package():
    files = sorted(PACKAGE.rglob("*.py"))
    hits = [f"{path.relative_to(PACKAGE.parent)}:{text[:match.start()].count(chr(10)) + 1}: {name}"
            for path in files for text in [path.read_text()] for name, pattern in UNSAFE.items()
            for match in pattern.finditer(text)]

    assert len(files) > 30 and not hits, hits


@pytest.mark.parametrize("line", ["import pickle", "x = torch.load(path)", "yaml.load(text)",
                                  "m = f(trust_remote_code=True)", "yaml.load(t, Loader=yaml.Loader)"])
def test_the_grep_catches_what_it_looks_for(line):
    assert any(pattern.search(line) for pattern in UNSAFE.values())


def test_bench_remote_to_an_unreachable_host_fails_within_its_timeout(tmp_path):
    from edgeft.bench.measure import CONNECT_TIMEOUT_S
    from tiny_bundle import make_bundle

    bundle = make_bundle(tmp_path)
    started = time.monotonic()
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never routed, so the connection hangs until the timeout (or fails at once
    # on a machine without a network).
    result = subprocess.run([sys.executable, "-m", "edgeft", "bench", str(bundle), "--remote",
                             "ssh://nobody@192.0.2.1", "--runs", "1"], capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - started

    assert result.returncode == 2, result.stderr
    assert "cannot reach the device over SSH" in result.stderr and "Traceback" not in result.stderr
    assert seconds < CONNECT_TIMEOUT_S + 30


def test_unknown_hub_model_fails_fast_when_offline(monkeypatch):
    from edgeft.models import resolve_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(EdgeftError, match="model.name: 'nobody/no-such-model' is not a local folder.*HF_HUB_OFFLINE"):
        resolve_model("nobody/no-such-model")
    with pytest.raises(EdgeftError, match="model.name: no such model folder"):
        resolve_model("./missing/model")
    assert time.monotonic() - started < 5


def test_max_length_above_the_model_positions_is_refused_before_anything_is_written(tiny_recipe, tmp_path):
    recipe = {**tiny_recipe, "data": {**tiny_recipe["data"], "max_length": 4096}}

    result = CliRunner().invoke(main, ["tune", str(write_recipe(recipe, tmp_path / "r.yaml"))])

    assert result.exit_code == 2 and "data.max_length: 4096 is above the 128 positions" in result.output
    assert not any(p.name.startswith((".run", "run")) for p in tmp_path.iterdir())


def test_a_second_tune_into_a_folder_being_written_is_refused(tiny_recipe, tmp_path):
    from edgeft.tune import _lock

    output = Path(tiny_recipe["output"])
    held = _lock(output)  # what a running tune holds
    try:
        result = CliRunner().invoke(main, ["tune", str(write_recipe(tiny_recipe, tmp_path / "r.yaml")),
                                           "--overwrite"])
    finally:
        held.close()

    assert result.exit_code == 2 and "is being written by another edgeft tune (pid" in result.output
    assert not output.exists() and not (output.parent / f".{output.name}.partial").exists()
