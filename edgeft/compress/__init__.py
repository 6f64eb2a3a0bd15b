"""`edgeft compress RUN_DIR --target NAME`: the best model a device can run within its budget, and what it cost.

The chain: build students from the tuned model (structured pruning, vocabulary pruning, distillation; see
`chain.PASSES`), export every model to every format and precision the target suits (quantizing per backend,
verified against PyTorch), measure each candidate's accuracy in its own runtime on the test split and its latency
for the target, then draw the Pareto front and pick within the budget. Written atomically to
`RUN_DIR/compress/<target>/`; the students are cached in `RUN_DIR/compress/models/` for every target.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import yaml
from rich.progress import Progress

from edgeft.atomic import promote
from edgeft.compress.config import CompressConfig
from edgeft.errors import EdgeftError

FP32_REFERENCE = ("tuned", "onnx", "fp32")
ORT_INT8_REFERENCE = ("tuned", "onnx", "int8")
BENCH_TEXTS = 64


def resolve_config(run_dir: str | Path, overrides: dict | None = None) -> CompressConfig:
    """The run recipe's `compress:` section (if any) with `overrides` (from flags) on top, validated."""
    from pydantic import ValidationError

    from edgeft.export.source import RECIPE_LOCK
    from edgeft.recipe import describe_errors

    lock = Path(run_dir) / RECIPE_LOCK
    section = {}
    if lock.is_file():
        section = (yaml.safe_load(lock.read_text()).get("recipe") or {}).get("compress") or {}
    try:
        return CompressConfig.model_validate({**section, **(overrides or {})})
    except ValidationError as error:
        raise EdgeftError([f"compress.{line}" for line in describe_errors(error, CompressConfig)]) from None


def compress(run_dir: str | Path, target: str = "host", config: CompressConfig | None = None,
             remote: str | None = None, output: str | Path | None = None) -> Path:
    """Build, export, measure and choose; returns the output folder (`RUN_DIR/compress/<target>`).

    Raises:
        EdgeftError: not a run folder, an unknown target, or no test data to measure accuracy on.
    """
    from edgeft.compress.chain import build_variants
    from edgeft.compress.measure import measure_candidate, pytorch_reference
    from edgeft.data import load_splits
    from edgeft.devices import HOST, load_profile
    from edgeft.export.source import read_lock, resolve

    source = resolve(run_dir)
    if source.recipe is None:
        raise EdgeftError(f"{run_dir}: compress needs a run folder from `edgeft tune` (with recipe.lock.yaml)")
    config = config or resolve_config(source.run_dir)
    profile = load_profile(target)
    recipe = read_lock(source.recipe)
    splits = load_splits(recipe.data, seed=recipe.training.seed)
    if splits.test is None:
        raise EdgeftError(f"{run_dir}: the run's recipe has no data.test; candidates are judged on the test split")
    output = Path(output or source.run_dir / "compress" / profile.name)
    work = output.parent / f".{output.name}.partial"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    examples = _examples(splits.test, splits.labels, config.eval_rows, recipe.training.seed)
    calibration = list(splits.train.shuffle(seed=recipe.training.seed)["text"][:300])
    bench_texts = [text for text, _ in examples[:BENCH_TEXTS]]
    variants = build_variants(source.model_dir, config, splits, source.run_dir / "compress" / "models")
    # ONNX first: an estimate of another format's bundle counts FLOPs from the ONNX graph of the same model.
    formats = sorted(config.formats or list(profile.runtimes), key=lambda name: name != "onnx")
    plan = [(v, f, p) for v in variants for f in formats for p in config.precisions_for(f)]
    if (ORT_INT8_REFERENCE[1] not in formats or "int8" not in config.precisions_for("onnx")):
        plan.append((variants[0], "onnx", "int8"))  # the reference every goal is stated against

    rows = []
    with Progress() as progress:
        task = progress.add_task("candidates", total=len(plan))
        for variant, format, precision in plan:
            name = f"{variant.name}-{format}-{precision}"
            progress.update(task, description=f"candidate {name}")
            graph = work / "bundles" / f"{variant.name}-onnx-{precision}" / "model.onnx"
            rows.append(measure_candidate(variant, format, precision, work / "bundles" / name, profile, config,
                                          examples, calibration, remote, bench_texts,
                                          graph if format != "onnx" and graph.is_file() else None))
            progress.advance(task)
        progress.update(task, description="PyTorch fp32 eager reference")
        reference = pytorch_reference(source.model_dir, examples, bench_texts, profile.threads,
                                      config.bench.runs, config.bench.warmup)
    for row in rows:
        row["reference"] = (row["model"], row["format"], row["precision"]) == ORT_INT8_REFERENCE
    summary = _decide([reference, *rows], config, profile, source, same_machine=remote is None
                      and profile.name == HOST)
    _write(work, output, summary, [reference, *rows])
    return output


def _examples(test, labels: list[str], limit: int | None, seed: int) -> list[tuple[str, str]]:
    split = test.shuffle(seed=seed)
    if limit:
        split = split.select(range(min(limit, len(split))))
    return [(text, labels[label]) for text, label in zip(split["text"], split["label"])]


def _decide(rows: list[dict], config: CompressConfig, profile, source, same_machine: bool) -> dict:
    from edgeft.compress.select import choose, measured, pareto_front

    tuned_accuracy = rows[0]["accuracy"]
    for row in rows:
        if measured(row):
            row["accuracy_drop"] = tuned_accuracy - row["accuracy"]
    slower = _int8_slower(rows)
    for row in rows:
        row["int8_slower_than_fp32"] = row["name"] in slower
    front = {id(row) for row in pareto_front(rows)}
    for row in rows:
        row["pareto"] = id(row) in front
    budget_ms = config.budget_ms or profile.latency_budget_ms
    memory_mb = config.memory_mb or profile.memory_budget_mb
    pickable = [r for r in rows if not r.get("reference") and not r["int8_slower_than_fp32"]]
    best, reason = choose(pickable, budget_ms, memory_mb, config.max_accuracy_drop, config.objective)
    sources = sorted({r["source"].split(" (")[0] for r in rows[1:] if measured(r)})
    return {
        "run": str(source.run_dir), "target": profile.name, "best": best["name"] if best else None,
        "reason": reason, "budget_ms": budget_ms, "memory_mb": memory_mb,
        "max_accuracy_drop": config.max_accuracy_drop, "objective": config.objective,
        "threads": profile.threads, "batch": config.bench.batch, "bench_texts": BENCH_TEXTS,
        "eval_rows": rows[0]["eval_rows"], "latency_source": ", ".join(sources) or "none",
        "tuned_accuracy": tuned_accuracy, "passes": _pass_effects(rows), "int8_slower": sorted(slower),
        # The PyTorch reference runs here; speed-ups against it mean something only when candidates ran here too.
        "goals": _goals(rows) if same_machine else None, "config": config.model_dump(mode="json"),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _int8_slower(rows: list[dict]) -> set[str]:
    """int8 candidates slower than the fp32 export of the same model and format (common without VNNI)."""
    from edgeft.compress.select import measured

    fp32 = {(r["model"], r["format"]): r for r in rows if measured(r) and r["precision"] == "fp32"}
    return {r["name"] for r in rows if measured(r) and r["precision"].startswith("int8")
            and (base := fp32.get((r["model"], r["format"]))) and r["p50_ms"] > base["p50_ms"]}


def _pass_effects(rows: list[dict]) -> list[dict]:
    from edgeft.compress.select import measured

    tuned = {(r["format"], r["precision"]): r for r in rows if measured(r) and r["model"] == "tuned"}
    return [
        {"model": r["model"], "format": r["format"], "precision": r["precision"],
         "accuracy_delta": r["accuracy"] - base["accuracy"], "speedup": base["p50_ms"] / r["p50_ms"],
         "size_ratio": (r["model_bytes"] or 0) / max(base["model_bytes"] or 1, 1)}
        for r in rows
        if measured(r) and r["model"] != "tuned" and (base := tuned.get((r["format"], r["precision"])))
    ]


def _goals(rows: list[dict]) -> dict | None:
    """Issue 5's goals: the fastest candidate within 1 point against PyTorch eager, ORT int8 and fp32 size."""
    from edgeft.compress.select import measured

    eager = rows[0]
    ort_int8 = next((r for r in rows if r.get("reference") and r is not eager and measured(r)), None)
    fp32 = next((r for r in rows if (r["model"], r["format"], r["precision"]) == FP32_REFERENCE and measured(r)),
                None)
    close = [r for r in rows[1:] if measured(r) and r["accuracy_drop"] <= 0.01 + 1e-12]
    if not close or ort_int8 is None:
        return None
    pick = min(close, key=lambda r: r["p50_ms"])
    fp32_bytes = (fp32 or eager)["model_bytes"]
    checks = {
        "speed-up vs PyTorch fp32 eager": (eager["p50_ms"] / pick["p50_ms"], 8.0, "≥ 8×"),
        "speed-up vs ONNX Runtime int8 (unpruned)": (ort_int8["p50_ms"] / pick["p50_ms"], 2.0, "≥ 2×"),
    }
    result = {name: {"measured": f"{value:.2f}×", "goal": text, "met": value >= goal}
              for name, (value, goal, text) in checks.items()}
    ratio = pick["model_bytes"] / fp32_bytes
    result["file size vs fp32"] = {"measured": f"{ratio:.1%}", "goal": "≤ 15%", "met": ratio <= 0.15}
    return {"candidate": pick["name"], "checks": result}


def _write(work: Path, output: Path, summary: dict, rows: list[dict]) -> None:
    from edgeft.compress.report import plot_pareto, write_report

    best = next((r for r in rows if r["name"] == summary["best"]), None)
    if best:
        shutil.copytree(best["bundle"], work / "best")
    plot_pareto(rows, summary["budget_ms"], work / "pareto.png", f"{Path(summary['run']).name} on {summary['target']}")
    write_report(work / "report.md", summary, rows)
    final_bundles = str(output / "bundles")
    for row in rows:  # paths as they will be once the folder is in place
        row["bundle"] = row["bundle"].replace(str(work / "bundles"), final_bundles)
    (work / "candidates.json").write_text(json.dumps({"summary": summary, "candidates": rows}, indent=2))
    promote(work, output)
