"""What a device carries: the installed size of the runtime venv (`pip install ".[onnx]"`) against the full toolchain,
the import time of `edgeft.runtime`, and the cold start (process start to first prediction) of a bundle, against
the same first prediction in PyTorch from the toolchain.

Usage:
    python -m benchmarks.runtime_footprint BUNDLE --model-dir RUN/merged [--repeats 5]

Writes `benchmarks/results/runtime_footprint.json` (every repeat's raw seconds included).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
TEXT = "I still have not received my new card"


def folder_bytes(folder: Path) -> int:
    """Bytes of every regular file under `folder` (symlinks not followed)."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


def timed(command: list[str], env: dict | None = None, repeats: int = 5) -> list[float]:
    """Wall seconds of `command`, `repeats` times, each a fresh process (the first also warms the page cache)."""
    seconds = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env, cwd=tempfile.gettempdir())
        seconds.append(time.perf_counter() - start)
    return seconds[1:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--model-dir", type=Path, required=True, help="the same model as a classifier folder")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--venv", type=Path, help="where to build the runtime venv (default: a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgeft-footprint-") as scratch:
        venv = (args.venv or Path(scratch) / "venv").resolve()
        started, install_seconds = time.perf_counter(), None  # None: an existing --venv was reused
        if not (venv / "bin" / "python").is_file():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                            "-c", str(REPO / "constraints.txt"), f"{REPO}[onnx]"], check=True)
            install_seconds = time.perf_counter() - started
        device_python = str(venv / "bin" / "python")
        clean = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        toolchain_env = {**os.environ, "PYTHONPATH": str(REPO)}
        runtime_import = timed([device_python, "-c", "import edgeft.runtime"], clean, args.repeats)
        runtime_cold = timed([device_python, "-m", "edgeft.runtime", str(args.bundle.resolve()), TEXT], clean,
                             args.repeats)
        torch_cold = timed([sys.executable, "-c", "import sys; from edgeft.bench.eager import load; "
                            "load(sys.argv[1]).logits([sys.argv[2]])", str(args.model_dir.resolve()), TEXT],
                           toolchain_env, args.repeats)
        result = {
            "command": " ".join(["python -m benchmarks.runtime_footprint", *sys.argv[1:]]),
            "runtime_venv_bytes": folder_bytes(venv),
            "toolchain_venv_bytes": folder_bytes(Path(sys.prefix)),
            "runtime_install_seconds": install_seconds,
            "import_edgeft_runtime_s": {"median": statistics.median(runtime_import), "raw": runtime_import},
            "cold_start_runtime_s": {"median": statistics.median(runtime_cold), "raw": runtime_cold},
            "cold_start_pytorch_s": {"median": statistics.median(torch_cold), "raw": torch_cold},
            "bundle": str(args.bundle), "bundle_bytes": folder_bytes(args.bundle),
            "loadavg": list(os.getloadavg()),
        }
    RESULTS.mkdir(exist_ok=True)
    output = RESULTS / "runtime_footprint.json"
    output.write_text(json.dumps(result, indent=2))
    print(f"runtime venv {result['runtime_venv_bytes'] / 2**20:.0f} MiB vs toolchain "
          f"{result['toolchain_venv_bytes'] / 2**20:.0f} MiB; import edgeft.runtime "
          f"{result['import_edgeft_runtime_s']['median']:.2f} s; cold start to first prediction: runtime "
          f"{result['cold_start_runtime_s']['median']:.2f} s vs PyTorch {result['cold_start_pytorch_s']['median']:.2f} s"
          f" (medians of {args.repeats}; load average {result['loadavg'][0]:.1f})\nwrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
