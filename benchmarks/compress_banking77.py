"""`edgeft compress` on the tuned BANKING77 MiniLM, with the project's goals checked against references measured
in the same run.

Usage (from the repo root; --lock holds a file lock during the final measurement so no other timing run overlaps):
    python -m benchmarks.compress_banking77 --label host-search --lock /work/logs/measure.lock -- --time-budget 90m
    python -m benchmarks.compress_banking77 --label host-search --measure-only   # re-measure a finished search

1. Runs the real CLI, `edgeft compress RUN --target host --output RUN/compress/<label> [extra flags]` (timed), unless
   --measure-only.
2. Measures under the bench protocol (`edgeft.bench.compare`: interleaved rounds, a fresh process per row, the same
   real test texts at batch 1, an A/A row, bootstrap intervals): the search's `best` bundle, ONNX Runtime dynamic
   int8 of the unpruned tuned model, and PyTorch fp32 eager of the tuned model.
3. Checks the goals: test accuracy within 1 point of the tuned model, >= 2x faster (p50) than ORT int8 of the
   unpruned model, >= 8x faster than PyTorch fp32 eager, <= 15% of the fp32 size.
Writes `benchmarks/results/compress_<run>_<label>.json`, <run> the run folder's name up to its first `-` (command, seconds, trials, front, raw latencies, goals with intervals).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import shlex
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ORT_INT8, EAGER = "ort-int8-unpruned", "pytorch-fp32-eager"
GOALS = {"accuracy_drop_pt": 1.0, "speedup_vs_ort_int8": 2.0, "speedup_vs_eager": 8.0, "size_vs_fp32": 0.15}
TEXTS = 64


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("runs/banking77-minilm-lora"))
    parser.add_argument("--target", default="host")
    parser.add_argument("--label", help="output name compress_banking77_<label>.json (default: the target)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (fresh process per row)")
    parser.add_argument("--seconds", type=float, default=2.0, help="least timed seconds per process")
    parser.add_argument("--measure-only", action="store_true", help="skip the search; measure its result again")
    parser.add_argument("--lock", type=Path, help="hold this file lock while measuring (not while searching)")
    parser.add_argument("--command", help="with --measure-only: the command the search ran, for the record")
    parser.add_argument("extra", nargs="*", help="more `edgeft compress` flags, after --")
    args = parser.parse_args()
    label = args.label or args.target
    folder = args.run / "compress" / label
    command = [sys.executable, "-m", "edgeft", "compress", str(args.run), "--target", args.target,
               "--output", str(folder), *args.extra]
    shown = shlex.join(["edgeft", *command[3:]])
    seconds = None
    if not args.measure_only:
        started = time.perf_counter()
        subprocess.run(command, check=True)
        seconds = round(time.perf_counter() - started)
    data = json.loads((folder / "candidates.json").read_text())
    with _held(args.lock):
        result = measure(args.run, data, args.rounds, args.seconds)
    RESULTS.mkdir(exist_ok=True)
    output = RESULTS / f"compress_{args.run.name.split('-')[0]}_{label}.json"
    previous = json.loads(output.read_text()) if output.exists() and args.measure_only else {}
    record = {"command": shown if not args.measure_only else args.command or previous.get("command", shown),
              "seconds": seconds if seconds is not None else previous.get("seconds"),
              "search": _search_summary(data), **result}
    output.write_text(json.dumps(record, indent=2))
    print(f"{record['command']}\n  {data['summary']['trials']['finished']} trials, "
          f"{record['search']['search_seconds'] / 60:.1f} min; best: {data['summary']['best']} ({data['summary']['reason']})")
    for name, goals in [(f"best ({result['best']['name']})", result["goals"]),
                        *[(f"front: {key}", entry["goals"]) for key, entry in result["front_goals"].items()]]:
        print(f"  {name}")
        for goal, check in goals.items():
            interval = f" [{check['ci'][0]:.3g}, {check['ci'][1]:.3g}]" if check["ci"] else ""
            print(f"    {goal}: {check['measured']:.3g}{interval} (goal {check['goal']}) "
                  f"{'met' if check['met'] else 'NOT met'}")
    aa = result["measurement"]["aa"]
    print(f"  A/A (noise floor): {aa['value']:.3f} [{aa['ci'][0]:.3f}, {aa['ci'][1]:.3f}]")
    print(f"wrote {output}")
    return 0


@contextmanager
def _held(lock: Path | None):
    """An exclusive flock on `lock` (other timing runs wait), or nothing."""
    if lock is None:
        yield
        return
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _search_summary(data: dict) -> dict:
    summary = data["summary"]
    by_name = {c["name"]: c for c in data["candidates"]}
    front = [{"name": name, "chain": by_name[name]["chain"], "validation": by_name[name]["validation"]["accuracy"],
              "test": (by_name[name]["test"] or {}).get("accuracy"), "p50_ms": by_name[name]["latency"]["p50_ms"],
              "mb": by_name[name]["model_bytes"] / 1e6} for name in summary["front"]]
    return {"best": summary["best"], "reason": summary["reason"], "trials": summary["trials"],
            "search_seconds": round(summary.get("searched_seconds") or summary["seconds"]), "reference": summary["reference"], "front": front,
            "config": summary["config"]}


def measure(run: Path, data: dict, rounds: int, seconds: float) -> dict:
    """best / ORT int8 (unpruned) / PyTorch eager under the bench protocol (interleaved fresh processes, same real
    texts, an A/A row), then the goals, each speed-up with its bootstrap interval from the paired rounds."""
    from edgeft.bench import compare
    from edgeft.bench.protocol import bundle_row, pytorch_row
    from edgeft.data import load_splits
    from edgeft.devices import load_profile
    from edgeft.export.source import read_lock, resolve

    source = resolve(run)
    recipe = read_lock(source.recipe)
    splits = load_splits(recipe.data, seed=recipe.training.seed)
    texts = list(splits.test["text"][:TEXTS])
    threads = load_profile("host").threads
    by_candidate = {c["name"]: c for c in data["candidates"]}
    best = by_candidate[data["summary"]["best"]]
    # The front is measured too: the goals are checked for `best` (what ships) and for every front candidate.
    front = [by_candidate[name] for name in data["summary"]["front"] if name != best["name"]]
    rows = [bundle_row(best["bundle"], "best"), *[bundle_row(c["bundle"], c["name"]) for c in front],
            bundle_row(_ort_int8_bundle(run, source, splits), ORT_INT8), pytorch_row(source.model_dir, EAGER)]
    result = compare(rows, rounds=rounds, seconds=seconds, threads=threads, texts=texts, baselines=[ORT_INT8, EAGER])
    by_name = {row["name"]: row for row in result["rows"]}
    fp32_bytes = sum(p.stat().st_size for p in source.model_dir.glob("*.safetensors"))
    tuned_test = data["summary"]["reference"]["test"]
    return {
        "measurement": {**{key: result[key] for key in ("protocol", "machine", "inputs", "aa")},
                        "texts": f"first {TEXTS} test texts, real lengths, batch 1",
                        "p50_ms": {name: row["p50_ms"] for name, row in by_name.items()},
                        "p50_ci_ms": {name: row["p50_ci_ms"] for name, row in by_name.items()},
                        "rows": result["rows"]},
        "best": {"name": best["name"], "chain": best["chain"], "validation": best["validation"]["accuracy"],
                 "test": best["test"]["accuracy"], "model_bytes": best["model_bytes"]},
        "tuned": {"test": tuned_test, "fp32_bytes": fp32_bytes},
        "goals": _goals(best, by_name["best"], tuned_test, fp32_bytes),
        "front_goals": {c["name"]: {"chain": c["chain"], "validation": c["validation"]["accuracy"],
                                    "test": c["test"]["accuracy"], "model_bytes": c["model_bytes"],
                                    "goals": _goals(c, by_name[c["name"]], tuned_test, fp32_bytes)}
                        for c in front if c.get("test")},
    }


def _goals(candidate: dict, row: dict, tuned_test: float, fp32_bytes: int) -> dict:
    """The four checks for one candidate: its test accuracy, its measured speed-ups with intervals, its size."""
    vs_ort, vs_eager = (row["ratio_vs"][name] for name in (ORT_INT8, EAGER))
    drop_pt = (tuned_test - candidate["test"]["accuracy"]) * 100
    size = candidate["model_bytes"] / fp32_bytes
    goals = {
        "test accuracy drop vs tuned (points)": (drop_pt, None, f"<= {GOALS['accuracy_drop_pt']:g}",
                                                 drop_pt <= GOALS["accuracy_drop_pt"] + 1e-9),
        "speed-up vs ONNX Runtime int8 (unpruned)": (vs_ort["value"], vs_ort["ci"],
                                                     f">= {GOALS['speedup_vs_ort_int8']:g}x",
                                                     vs_ort["value"] >= GOALS["speedup_vs_ort_int8"]),
        "speed-up vs PyTorch fp32 eager": (vs_eager["value"], vs_eager["ci"], f">= {GOALS['speedup_vs_eager']:g}x",
                                           vs_eager["value"] >= GOALS["speedup_vs_eager"]),
        "size vs fp32": (size, None, f"<= {GOALS['size_vs_fp32']:.0%}", size <= GOALS["size_vs_fp32"]),
    }
    return {name: {"measured": value, "ci": ci, "goal": goal, "met": bool(met)}
            for name, (value, ci, goal, met) in goals.items()}


def _ort_int8_bundle(run: Path, source, splits) -> Path:
    """ONNX Runtime dynamic int8 of the unpruned tuned model (exported once, verified like every bundle)."""
    from edgeft.export import export

    folder = run / "compress" / "reference-onnx-int8"
    if not (folder / "manifest.json").is_file():
        labels = splits.labels
        examples = [(t, labels[y]) for t, y in zip(splits.validation["text"][:256], splits.validation["label"][:256])]
        export(source.model_dir, "onnx", "int8", output=folder, texts=examples, progress=False)
    return folder


if __name__ == "__main__":
    sys.exit(main())
