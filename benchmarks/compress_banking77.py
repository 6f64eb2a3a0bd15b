"""Issue 5's measurement: `edgeft compress` on the tuned BANKING77 MiniLM, saved with its reference rows.

Usage:
    python -m benchmarks.compress_banking77 --target host [--label NAME] [--run runs/...] [-- extra compress flags]

Runs the real CLI (so the recorded command is exactly what ran), then writes
`benchmarks/results/compress_banking77_<target>.json`: the command, the summary (best, goals) and every candidate
row, including the PyTorch fp32 eager and ONNX Runtime dynamic int8 reference rows measured in the same run.
Prints the goals as ratios against those references.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("runs/banking77-minilm-lora"))
    parser.add_argument("--target", default="host")
    parser.add_argument("--label", help="name the result compress_banking77_<label>.json (default: the target)")
    parser.add_argument("extra", nargs="*", help="more `edgeft compress` flags, after --")
    args = parser.parse_args()
    label = args.label or args.target
    folder = args.run / "compress" / label
    command = [sys.executable, "-m", "edgeft", "compress", str(args.run), "--target", args.target,
               "--output", str(folder), *args.extra]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - started
    data = json.loads((folder / "candidates.json").read_text())
    RESULTS.mkdir(exist_ok=True)
    output = RESULTS / f"compress_banking77_{label}.json"
    shown = shlex.join(["edgeft", *command[3:]])
    output.write_text(json.dumps({"command": shown, "seconds": round(seconds), **data}, indent=2))
    summary = data["summary"]
    print(f"{shown}\n  best: {summary['best']} ({summary['reason']})")
    goals = summary.get("goals") or {}
    for name, check in (goals.get("checks") or {}).items():
        print(f"  {name}: {check['measured']} (goal {check['goal']}) {'met' if check['met'] else 'NOT met'}")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
