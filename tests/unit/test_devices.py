"""Device profiles: every shipped YAML validates, host detection, errors that name the field, the CLI."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from edgeft.cli import main
from edgeft.devices import DEVICES_DIR, DeviceProfile, list_profiles, load_profile
from edgeft.errors import EdgeftError

SHIPPED = sorted(DEVICES_DIR.glob("**/*.yaml"))
REQUIRED = {"rpi4", "rpi5", "jetson-orin-nano", "x86-avx2", "x86-avx512-vnni", "android-arm64", "host"}


def test_required_profiles_are_shipped():
    assert REQUIRED <= set(list_profiles())


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.stem)
def test_shipped_profile_validates(path):
    # execute
    profile = load_profile(path)
    # assert
    assert isinstance(profile, DeviceProfile)
    assert profile.name == path.stem
    assert profile.peak("fp32") > 0 and profile.memory_bandwidth_gbs > 0
    assert profile.threads <= profile.cores


@pytest.mark.parametrize("path", [p for p in SHIPPED if p.stem != "host"], ids=lambda path: path.stem)
def test_shipped_peaks_say_where_they_come_from(path):
    lines = path.read_text().splitlines()
    for key in ("fp32:", "memory_bandwidth_gbs:"):
        line = next(line for line in lines if line.strip().startswith(key))
        assert "#" in line, f"{path.name}: {key} needs a source comment"


def test_host_is_detected():
    host = load_profile("host")
    assert host.cores >= 1 and host.clock_ghz > 0 and host.ram_gb > 0
    assert host.cpu and host.cpu != "auto"
    assert host.threads == host.cores


def test_user_yaml_path_works(tmp_path):
    # setup
    raw = yaml.safe_load((DEVICES_DIR / "rpi4.yaml").read_text())
    path = tmp_path / "my-pi.yaml"
    path.write_text(yaml.safe_dump({**raw, "name": "my-pi", "threads": 2}))
    # execute
    profile = load_profile(str(path))
    # assert
    assert (profile.name, profile.threads) == ("my-pi", 2)


def test_invalid_profile_names_every_field(tmp_path):
    raw = yaml.safe_load((DEVICES_DIR / "rpi4.yaml").read_text())
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**raw, "cores": 0, "runtimes": ["tensorflow"], "clock": 2}))
    with pytest.raises(EdgeftError) as caught:
        load_profile(path)
    text = "\n".join(caught.value.problems)
    assert "cores" in text and "runtimes.0" in text and "clock: unknown field" in text


def test_unknown_name_lists_known():
    with pytest.raises(EdgeftError, match="rpi4"):
        load_profile("rpi9")


def test_cli_lists_and_shows():
    runner = CliRunner()
    listing = runner.invoke(main, ["devices"], env={"COLUMNS": "200"})
    shown = runner.invoke(main, ["devices", "show", "rpi4"])
    missing = runner.invoke(main, ["devices", "show", "rpi9"])
    assert listing.exit_code == 0 and "jetson-orin-nano" in listing.output
    assert shown.exit_code == 0 and "Cortex-A72" in shown.output and "#" in shown.output
    assert missing.exit_code == 2 and "unknown device" in missing.output


def test_quantization_lists_deployable_pairs(tmp_path):
    # the shipped profiles name format-precision pairs of their own runtimes; host searches every int8 path
    assert load_profile("rpi4").quantization == ["tflite-int8", "tflite-int8-emb4", "onnx-int8"]
    assert set(load_profile("host").quantization) == {"tflite-int8", "tflite-int8-emb4", "onnx-int8", "openvino-int8"}
    raw = yaml.safe_load((DEVICES_DIR / "rpi4.yaml").read_text())
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**raw, "quantization": ["openvino-int8", "onnx-int3"]}))
    with pytest.raises(EdgeftError) as error:
        load_profile(path)
    assert "quantization.1" in str(error.value.problems)
    path.write_text(yaml.safe_dump({**raw, "quantization": ["openvino-int8"]}))
    with pytest.raises(EdgeftError, match="not in runtimes"):
        load_profile(path)
    path.write_text(yaml.safe_dump({**raw, "quantization": []}))
    assert load_profile(path).quantization == ["tflite-fp32", "onnx-fp32"]  # nothing listed: fp32 of each runtime
