"""Device profiles: what a target can run and how fast it is, one YAML file per device in `devices/`.

A profile names the hardware (CPU, cores, clock, ISA features, RAM), what suits it (runtimes in order of
preference, the format x precision pairs to deploy, default threads, latency and memory budgets) and, for the roofline estimate of
`edgeft bench`, its peak GFLOP/s per precision and memory bandwidth. The shipped YAML files say where each number
comes from. `host` is this machine, filled in by detection; a user's own YAML path works wherever a name does.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError, model_validator

from edgeft.errors import EdgeftError
from edgeft.recipe import describe_errors, read_yaml_mapping

# A source checkout keeps the profiles in `devices/` at its root; a wheel installs them as data files.
_CHECKOUT_DEVICES = Path(__file__).resolve().parent.parent / "devices"
DEVICES_DIR = _CHECKOUT_DEVICES if _CHECKOUT_DEVICES.is_dir() else Path(sys.prefix) / "share" / "edgeft" / "devices"
HOST = "host"

Isa = Literal["neon", "dotprod", "i8mm", "fp16", "sve", "avx2", "fma", "avx512", "vnni", "bf16", "amx"]
Runtime = Literal["onnx", "openvino", "tflite"]
Precision = Literal["fp32", "fp16", "int8"]
# A runtime and the precision its export gets, as `edgeft export --format F --precision P` names them.
Deployment = Literal["onnx-fp32", "onnx-int8", "onnx-int4", "onnx-int4-genai", "onnx-int4-lora", "openvino-fp32",
                     "openvino-fp16", "openvino-int8", "openvino-int8-weights", "openvino-int4", "tflite-fp32",
                     "tflite-int8", "tflite-int8-emb4"]


class DeviceProfile(BaseModel):
    """One target device. Every field is documented; unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    """Short name used on the command line (`--target rpi4`)."""
    description: str = ""
    """One line for humans: the board or machine this stands for."""
    cpu: str
    """CPU model, e.g. `Cortex-A72 (BCM2711)`."""
    cores: PositiveInt
    """CPU cores the runtime may use."""
    clock_ghz: PositiveFloat
    """Sustained clock of the cores used, GHz."""
    isa: list[Isa] = []
    """SIMD and numeric features that change kernel choice (NEON, dotprod, AVX2, AVX-512, VNNI, ...)."""
    ram_gb: PositiveFloat
    """Memory installed, GiB."""
    runtimes: list[Runtime] = Field(min_length=1)
    """Runtimes the device can run, most preferred first."""
    quantization: list[Deployment] = Field(default_factory=list)
    """Format x precision pairs that suit the device, best first; `edgeft compress` searches over these.
    Empty: fp32 of every runtime."""
    threads: PositiveInt
    """Default inference threads."""
    latency_budget_p50_ms: PositiveFloat = 100.0
    """Default per-request latency budget on the median (p50, batch 1), ms; `edgeft compress` picks under it."""
    memory_budget_mb: PositiveFloat = 512.0
    """Default peak-RSS budget of the inference process, MiB."""
    peak_gflops: dict[Precision, PositiveFloat]
    """Peak arithmetic throughput per precision, GFLOP/s (GOP/s for int8), all cores. Must include fp32."""
    memory_bandwidth_gbs: PositiveFloat
    """Memory bandwidth, GB/s."""
    ssh: str | None = None
    """Optional `ssh://user@host[:port]` where this device is reachable; `edgeft bench` then measures there."""
    python: str = "python3"
    """Python on the device that has the edgeft runtime installed."""

    @model_validator(mode="after")
    def _deployable(self):
        foreign = [pair for pair in self.quantization if pair.split("-")[0] not in self.runtimes]
        if foreign:
            raise ValueError(f"quantization: {', '.join(foreign)} use a runtime not in runtimes {self.runtimes}")
        if not self.quantization:
            self.quantization = [f"{runtime}-fp32" for runtime in self.runtimes]
        return self

    def peak(self, precision: str) -> float:
        """Peak GFLOP/s for a precision; precisions the device lacks run at its fp32 rate."""
        return self.peak_gflops.get(precision, self.peak_gflops["fp32"])


def list_profiles() -> list[str]:
    """Names of the shipped profiles, sorted, `host` included."""
    return sorted(path.stem for path in DEVICES_DIR.glob("*.yaml"))


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """A shipped profile by name, or a user's YAML file by path. `host` is completed by detection.

    Raises:
        EdgeftError: unknown name (listing the known ones), unreadable file, or every invalid field.
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    if not (text.endswith((".yaml", ".yml")) or path.is_file()):
        path = DEVICES_DIR / f"{text}.yaml"
        if not path.is_file():
            raise EdgeftError(f"--target: unknown device {text!r}; known: {', '.join(list_profiles())} "
                              "(or a path to a profile .yaml)")
    raw = read_yaml_mapping(path, "device profile")
    if raw.get("name") == HOST:
        raw = {**detect_host(), **{key: value for key, value in raw.items() if value != "auto"}}
    return validate_profile(raw, source=str(path))


def validate_profile(raw: dict, source: str = "profile") -> DeviceProfile:
    """Validate a profile mapping; one `source: field: problem` line per invalid field."""
    try:
        profile = DeviceProfile.model_validate(raw)
    except ValidationError as error:
        raise EdgeftError([f"{source}: {line}" for line in describe_errors(error, DeviceProfile)]) from None
    if "fp32" not in profile.peak_gflops:
        raise EdgeftError(f"{source}: peak_gflops: needs an fp32 entry (got {sorted(profile.peak_gflops)})")
    return profile


def profiles_table():
    """A rich table of every shipped profile: the hardware, what runs on it, and the default budgets."""
    from rich.table import Table

    grid = Table(title=f"device profiles ({DEVICES_DIR})")
    grid.add_column("name", no_wrap=True)
    for column in ("cpu", "cores x GHz", "ISA", "RAM", "runtimes", "quantization", "fp32 / int8 GFLOP/s",
                   "GB/s", "budget"):
        grid.add_column(column)
    for name in list_profiles():
        p = load_profile(name)
        grid.add_row(p.name, p.cpu, f"{p.cores} x {p.clock_ghz:g}", " ".join(p.isa), f"{p.ram_gb:g} GiB",
                     ", ".join(p.runtimes), ", ".join(p.quantization),
                     f"{p.peak('fp32'):g} / {p.peak('int8'):g}", f"{p.memory_bandwidth_gbs:g}",
                     f"p50 {p.latency_budget_p50_ms:g} ms, {p.memory_budget_mb:g} MiB")
    return grid


def profile_text(name_or_path: str | Path) -> str:
    """A profile as YAML for `edgeft devices show`: the shipped file with its source comments, or the detected host."""
    profile = load_profile(name_or_path)
    path = Path(str(name_or_path)).expanduser()
    if not path.is_file():
        path = DEVICES_DIR / f"{name_or_path}.yaml"
    if profile.name == HOST:
        detected = yaml.safe_dump(profile.model_dump(mode="json"), sort_keys=False)
        return f"# detected on this machine ({path} supplies the rest)\n{detected}"
    return path.read_text()


# Single-precision FLOPs per cycle per core: 2 (FMA) x fp32 lanes x FMA pipes. x86 cores with AVX2 or AVX-512 are
# taken as two FMA pipes (AMD Zen 4 runs 512-bit ops on 256-bit pipes, so AVX-512 is counted at 256-bit width);
# Arm cores without the data are taken as one 128-bit FMA pipe.
def _fp32_flops_per_cycle(isa: list[str]) -> int:
    if "avx512" in isa and platform.machine() == "x86_64" and "AuthenticAMD" not in _cpuinfo().get("vendor_id", ""):
        return 2 * 16 * 2
    if "avx2" in isa:
        return 2 * 8 * 2
    return 2 * 4 * 1


@functools.lru_cache(maxsize=1)
def detect_host() -> dict:
    """Fields of this machine read from /proc/cpuinfo, os.cpu_count and /proc/meminfo. Peaks are nominal
    (clock x cores x SIMD width); the memory bandwidth is measured (a large numpy copy, ~0.2 s)."""
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    isa = [name for name, flag in _ISA_FLAGS if flag in flags]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    clock = float(info.get("cpu MHz", 2000.0)) / 1000.0
    fp32 = cores * clock * _fp32_flops_per_cycle(isa)
    int8 = fp32 * (4 if "vnni" in isa or "dotprod" in isa else 2)
    return {
        "name": HOST,
        "description": f"this machine ({platform.node()}, {platform.machine()})",
        "cpu": cpu_model(),
        "cores": cores,
        "clock_ghz": round(clock, 2),
        "isa": isa,
        "ram_gb": round(_meminfo_kb("MemTotal") / 2**20, 1),
        "threads": cores,
        "peak_gflops": {"fp32": round(fp32, 1), "int8": round(int8, 1)},
        "memory_bandwidth_gbs": round(measure_bandwidth(), 1),
    }


def measure_bandwidth(megabytes: int = 64, repeats: int = 5) -> float:
    """Sustained memory bandwidth in GB/s: best of a few copies of an array far larger than the caches
    (a copy reads and writes every byte)."""
    import time

    import numpy as np

    source = np.ones(megabytes * 2**20 // 8)
    target = np.empty_like(source)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(target, source)
        best = min(best, time.perf_counter() - start)
    return 2 * source.nbytes / best / 1e9


_ISA_FLAGS = [("neon", "asimd"), ("dotprod", "asimddp"), ("i8mm", "i8mm"), ("fp16", "fphp"), ("sve", "sve"),
              ("avx2", "avx2"), ("fma", "fma"), ("avx512", "avx512f"), ("vnni", "avx512_vnni"),
              ("bf16", "avx512_bf16"), ("amx", "amx_tile")]


def cpu_model() -> str:
    """The CPU's marketing name, as the kernel reports it."""
    info = _cpuinfo()
    return info.get("model name") or info.get("Hardware") or platform.processor() or platform.machine()


def _cpuinfo() -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    return fields


def _meminfo_kb(key: str) -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return 4 * 2**20
