"""`edgeft bench BUNDLE --target rpi4 --emulate`: the packaged runtime run on the target's CPU under emulation.

No Raspberry Pi is needed to show that a bundle runs on arm64 and predicts what it predicts here: an arm64 Debian
root is extracted with `mmdebstrap` (its Python and C libraries only; no package scripts run, so no binfmt
registration is needed), the bundle's wheel from `edgeft package` and edgeft's own wheel are installed into it with
their runtime extra from PyPI's aarch64 wheels (pip resolving for that platform), and the bundle runs there under
`qemu-<arch>-static`, started explicitly. qemu-user 7.2 passes the host's x86 /proc/cpuinfo through, on which
ONNX Runtime's CPU detection (pytorch/cpuinfo) crashes, so the run happens in a private mount namespace
(`unshare`) where /proc/cpuinfo describes the target's cores and ISA (NEON, dotprod, ...). Its logits on the manifest's reference texts must equal this host's
(same top-1 everywhere, logits within the bundle's self-check tolerance). Timings under emulation mean nothing,
so none are reported.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import edgeft
from edgeft.devices import DeviceProfile, load_profile
from edgeft.errors import EdgeftError
from edgeft.runtime.bench import reference_texts
from edgeft.runtime.bundle import read_checked

DEBIAN_SUITE = "bookworm"
DEBIAN_PYTHON = "3.11"
# Debian architecture and pip platform tags per CPU architecture; bookworm's glibc 2.36 runs manylinux <= 2.36.
ARCHES = {"aarch64": {"debian": "arm64", "qemu": "qemu-aarch64-static",
                      "platforms": ["manylinux2014_aarch64"] + [f"manylinux_2_{minor}_aarch64"
                                                                for minor in range(17, 37)]}}
ROOT_PACKAGES = [f"python{DEBIAN_PYTHON}-minimal", f"libpython{DEBIAN_PYTHON}-stdlib", "libstdc++6", "libgomp1"]
# /proc/cpuinfo feature names of the profile's ISA flags (an ARM Cortex-A72 otherwise, like a Raspberry Pi 4).
CPUINFO_FEATURES = {"neon": "fp asimd", "fp16": "fphp asimdhp", "dotprod": "asimddp", "i8mm": "i8mm", "sve": "sve"}
CPUINFO_CORE = "BogoMIPS\t: 108.00\nFeatures\t: {features} evtstrm crc32 cpuid\nCPU implementer\t: 0x41\n" \
               "CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n"
NOTE = "emulated: correctness only; timings under emulation say nothing about the device, so none are reported"

DEVICE_SCRIPT = """
import importlib, importlib.util, json, platform, sys
module = importlib.import_module(sys.argv[1])
texts = json.loads(open(sys.argv[2]).read())
predictor = module.load()  # checks every file's sha256 and runs the bundle's self-check on this CPU
print(json.dumps({"machine": platform.machine(), "python": platform.python_version(),
                  "torch_installed": importlib.util.find_spec("torch") is not None,
                  "runtime_versions": predictor.runtime_versions, "logits": predictor.logits(texts).tolist()}))
"""


def emulate(bundle: str | Path, target: str | Path | DeviceProfile = "rpi4", cache: Path | None = None,
            json_path: Path | None = None) -> dict:
    """Install the bundle's wheel into an emulated root of `target`'s architecture and compare predictions.

    Args:
        bundle: a bundle folder.
        target: a device profile whose CPU is emulated (arm64 profiles: rpi4, rpi5, jetson-orin-nano, ...).
        cache: where the extracted root is kept between runs (default `$EDGEFT_CACHE` or ~/.cache/edgeft).
        json_path: also write the result here.

    Returns:
        {"equal", "max_abs_diff", "top1_agreement", "texts", "arch", "machine", "runtime_versions", "note",
        "seconds": {...}, ...}

    Raises:
        EdgeftError: an unsupported target, missing tools (with the install line), or a failed install or run.
    """
    folder, manifest = read_checked(bundle)
    profile = target if isinstance(target, DeviceProfile) else load_profile(target)
    arch = target_arch(profile)
    spec = ARCHES[arch]
    tools = missing_tools(arch)
    if tools:
        raise EdgeftError(f"--emulate needs {', '.join(tools)} (Debian/Ubuntu: apt-get install qemu-user-static "
                          "mmdebstrap util-linux)")
    texts = reference_texts(manifest)
    if not texts:
        raise EdgeftError(f"{bundle}: the manifest has no reference texts to compare on; re-export the bundle")
    seconds = {}
    started = time.perf_counter()
    root = debian_root(arch, Path(cache) if cache else default_cache())
    seconds["root"] = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="edgeft-emulate-") as scratch:
        scratch = Path(scratch)
        started = time.perf_counter()
        wheels = _wheels(folder, scratch / "wheels")
        seconds["wheels"] = time.perf_counter() - started
        site = scratch / "site"
        started = time.perf_counter()
        _pip_install(wheels, manifest["format"], site, spec["platforms"])
        seconds["install"] = time.perf_counter() - started
        (scratch / "texts.json").write_text(json.dumps(texts))
        started = time.perf_counter()
        (scratch / "cpuinfo").write_text(fake_cpuinfo(profile))
        device = _run_emulated(root, spec["qemu"], site, wheels["module"], scratch)
        seconds["run"] = time.perf_counter() - started
    from edgeft.runtime import load

    host = load(folder).logits(texts)
    emulated = np.asarray(device["logits"], dtype=np.float32)
    max_diff = float(np.abs(host - emulated).max())
    top1 = float((host.argmax(axis=1) == emulated.argmax(axis=1)).mean())
    tolerance = float(manifest["self_check"]["tolerance"])
    result = {
        "bundle": str(folder), "target": profile.name, "arch": arch, "machine": device["machine"],
        "emulator": spec["qemu"], "root": f"Debian {DEBIAN_SUITE} {spec['debian']} ({root})",
        "python": device["python"], "runtime_versions": device["runtime_versions"],
        "torch_installed": device["torch_installed"], "texts": len(texts), "max_abs_diff": max_diff,
        "top1_agreement": top1, "tolerance": tolerance, "equal": top1 == 1.0 and max_diff <= tolerance,
        "seconds": seconds, "note": NOTE,
    }
    if json_path:
        from edgeft.bench.report import write_json

        write_json([result], json_path)
    return result


def default_cache() -> Path:
    """Where the extracted root is kept: `$EDGEFT_CACHE`, else ~/.cache/edgeft."""
    return Path(os.environ.get("EDGEFT_CACHE") or Path.home() / ".cache" / "edgeft")


def target_arch(profile: DeviceProfile) -> str:
    """The CPU architecture of a profile: arm64 for NEON devices; others cannot be emulated here."""
    if "neon" in profile.isa:
        return "aarch64"
    raise EdgeftError(f"--emulate: {profile.name} is not an arm64 device (isa {profile.isa}); emulation covers "
                      f"arm64 profiles such as rpi4")


def missing_tools(arch: str) -> list[str]:
    """Programs --emulate needs that are not on PATH."""
    return [tool for tool in (ARCHES[arch]["qemu"], "mmdebstrap", "unshare") if shutil.which(tool) is None]


def debian_root(arch: str, cache: Path) -> Path:
    """An extracted Debian root for `arch` with Python, kept in `cache` (built once, atomically)."""
    debian = ARCHES[arch]["debian"]
    root = cache / f"debian-{DEBIAN_SUITE}-{debian}-python{DEBIAN_PYTHON}"
    if (root / "usr" / "bin" / f"python{DEBIAN_PYTHON}").is_file():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache, prefix=f".{root.name}."))
    command = ["mmdebstrap", "--quiet", "--variant=extract", f"--arch={debian}", f"--include={','.join(ROOT_PACKAGES)}",
               DEBIAN_SUITE, str(staging / "root")]
    result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise EdgeftError(f"building the {debian} Debian root failed (exit {result.returncode}): "
                          f"{_tail(result.stderr)}", exit_code=1)
    shutil.rmtree(root, ignore_errors=True)
    (staging / "root").rename(root)
    shutil.rmtree(staging, ignore_errors=True)
    return root


def _wheels(folder: Path, out: Path) -> dict:
    """edgeft's own wheel (built from this source checkout) and the bundle's wheel from `edgeft package`."""
    from edgeft.package import package

    source = Path(edgeft.__file__).resolve().parent.parent
    if not (source / "pyproject.toml").is_file():
        raise EdgeftError(f"--emulate builds edgeft's wheel from its source checkout; {source} has no pyproject.toml")
    out.mkdir(parents=True)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
               str(source)]
    result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise EdgeftError(f"building edgeft's wheel failed: {_tail(result.stderr)}", exit_code=1)
    runtime = next(out.glob("edgeft-*.whl"))
    bundle_wheel = package(folder, out, name="edgeft-bundle-emulated")
    return {"runtime": runtime, "bundle": bundle_wheel, "module": "edgeft_bundle_emulated",
            "constraints": source / "constraints.txt"}


def _pip_install(wheels: dict, bundle_format: str, site: Path, platforms: list[str]) -> None:
    """pip resolves the runtime extra for the emulated platform (binary wheels only) into `site`."""
    from edgeft.package import RUNTIME_EXTRAS

    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
               "--target", str(site), "--only-binary=:all:", "--implementation", "cp",
               "--python-version", DEBIAN_PYTHON, *[arg for tag in platforms for arg in ("--platform", tag)]]
    if wheels["constraints"].is_file():  # the versions verified on the host
        command += ["-c", str(wheels["constraints"])]
    command += [f"{wheels['runtime']}[{RUNTIME_EXTRAS[bundle_format]}]", str(wheels["bundle"])]
    result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise EdgeftError(f"installing the runtime for the emulated platform failed: {_tail(result.stderr)}",
                          exit_code=1)


def fake_cpuinfo(profile: DeviceProfile) -> str:
    """An arm64 /proc/cpuinfo with the profile's ISA features, one entry per host CPU (cpuinfo cross-checks
    /sys/devices/system/cpu, which still lists the host's CPUs)."""
    features = " ".join(CPUINFO_FEATURES[flag] for flag in profile.isa if flag in CPUINFO_FEATURES)
    core = CPUINFO_CORE.format(features=features)
    return "\n".join(f"processor\t: {index}\n{core}" for index in range(os.cpu_count() or 1))


def _run_emulated(root: Path, qemu: str, site: Path, module: str, scratch: Path) -> dict:
    python = root / "usr" / "bin" / f"python{DEBIAN_PYTHON}"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(site), "QEMU_LD_PREFIX": str(root),
           "HOME": str(scratch), "PYTHONDONTWRITEBYTECODE": "1"}
    emulated = shlex.join([qemu, "-cpu", "max", "-L", str(root), str(python), "-c", DEVICE_SCRIPT, module,
                           str(scratch / "texts.json")])
    inner = f"mount --bind {shlex.quote(str(scratch / 'cpuinfo'))} /proc/cpuinfo && exec {emulated}"
    # Root can make a mount namespace directly; other users need a user namespace mapping them to root.
    namespace = ["unshare", "--mount", "--propagation", "private"] if os.geteuid() == 0 else \
        ["unshare", "--user", "--map-root-user", "--mount"]
    result = subprocess.run([*namespace, "sh", "-c", inner], capture_output=True, text=True, env=env,
                            stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise EdgeftError(f"the bundle failed under emulation (exit {result.returncode}): {_tail(result.stderr)}",
                          exit_code=1)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(line for line in text.strip().splitlines()[-lines:] if line.strip()) or "no message"
