"""`edgeft bench BUNDLE --target rpi4 --emulate`: the packaged runtime installed from PyPI's aarch64 wheels into an
arm64 Debian root, run under qemu, predicts what this host predicts. Skips with the install line where qemu-user or
mmdebstrap is missing, or where the Debian root cannot be fetched (no network); about a minute with a warm cache."""

from __future__ import annotations

import json

import pytest
from bench_support import make_tiny_bundle
from click.testing import CliRunner

from edgeft.bench import emulate
from edgeft.cli import main
from edgeft.devices import load_profile
from edgeft.errors import EdgeftError


@pytest.mark.slow
def test_onnx_bundle_runs_on_arm64_under_emulation(tmp_path):
    # setup
    missing = emulate.missing_tools("aarch64")
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install qemu-user-static mmdebstrap util-linux)")
    bundle = make_tiny_bundle(tmp_path)
    try:
        emulate.debian_root("aarch64", emulate.default_cache())
    except EdgeftError as error:
        pytest.skip(f"cannot fetch the arm64 Debian root here: {error}")
    # execute
    outcome = CliRunner().invoke(main, ["bench", str(bundle), "--target", "rpi4", "--emulate", "--json",
                                        str(tmp_path / "emulated.json")])
    # assert
    assert outcome.exit_code == 0, outcome.output
    assert "runs on aarch64 (verified under emulation)" in outcome.output
    assert "timings under emulation say nothing" in outcome.output
    result = json.loads((tmp_path / "emulated.json").read_text())
    assert result["machine"] == "aarch64" and result["equal"] and result["top1_agreement"] == 1.0
    assert result["texts"] == len(json.loads((bundle / "manifest.json").read_text())["reference_sample"]["texts"])
    assert "onnxruntime" in result["runtime_versions"] and not result["torch_installed"]


def test_only_arm64_profiles_are_emulated(tmp_path):
    bundle_less = CliRunner().invoke(main, ["bench", str(tmp_path), "--target", "rpi4", "--emulate"])
    assert bundle_less.exit_code != 0 and "Traceback" not in bundle_less.output
    with pytest.raises(EdgeftError, match="not an arm64 device"):
        emulate.target_arch(load_profile("x86-avx2"))


def test_fake_cpuinfo_describes_the_profile():
    text = emulate.fake_cpuinfo(load_profile("rpi5"))
    assert "CPU implementer\t: 0x41" in text and "asimd" in text
    assert ("asimddp" in text) == ("dotprod" in load_profile("rpi5").isa)
    assert "asimddp" not in emulate.fake_cpuinfo(load_profile("rpi4"))  # a Cortex-A72 has no dotprod
