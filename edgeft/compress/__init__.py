"""`edgeft compress RUN_DIR --target NAME`: search for the best model a device can run, and say what it cost.

A typed pipeline of passes (`edgeft.compress.passes.PASSES`: prune, vocab, distill, export) is searched by an Optuna
multi-objective study (`edgeft.compress.search`): the task metric on the validation split against p50 latency on
the target, cheap stages first. The front and `best/` are chosen on validation; the test split is evaluated once,
for the chosen front. Written atomically to `RUN_DIR/compress/<target>/`; pass outputs are cached in
`RUN_DIR/compress/cache/` for every trial and target; the study lives in `RUN_DIR/compress/search/<target>.journal`
(or `--storage`).
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from edgeft.atomic import promote
from edgeft.compress.config import CompressConfig
from edgeft.errors import EdgeftError

SEARCH_SECONDS = 1.0  # the least timed seconds per process when the finalists are timed together


def resolve_config(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> CompressConfig:
    """The run recipe's `compress:` section (also for `RUN/merged`), `key.path=value` overrides on top, validated.

    Raises:
        EdgeftError: every invalid field, and overrides of a pass the chain does not include.
    """
    import yaml
    from pydantic import ValidationError

    from edgeft.export.source import resolve
    from edgeft.recipe import _apply_override, describe_errors

    source = resolve(run_dir)
    section = {}
    if source.recipe is not None:
        section = (yaml.safe_load(source.recipe.read_text()).get("recipe") or {}).get("compress") or {}
    problems = [problem for item in overrides for problem in _apply_override(section, item)]
    if problems:
        raise EdgeftError([f"compress: {problem}" for problem in problems])
    try:
        config = CompressConfig.model_validate(section)
    except ValidationError as error:
        raise EdgeftError([f"compress.{line}" for line in describe_errors(error, CompressConfig)]) from None
    from edgeft.compress.passes import PASSES

    unused = sorted({item.split(".")[0] for item in overrides} & set(PASSES) - set(config.passes))
    if unused:
        raise EdgeftError([f"compress.{name}: set, but the chain compress.passes ({', '.join(config.passes)}) "
                           f"has no {name} pass" for name in unused])
    return config


def compress(run_dir: str | Path, target: str = "host", config: CompressConfig | None = None,
             remote: str | None = None, output: str | Path | None = None, resume: bool = False) -> Path:
    """Search, choose on validation, test the front once, report; returns the output folder.

    Raises:
        EdgeftError: not a run folder, an unknown target, or no candidate could be measured.
    """
    from edgeft.compress.progress import SearchProgress
    from edgeft.compress.search import SearchSetup, run_search
    from edgeft.console import third_party_to
    from edgeft.devices import load_profile
    from edgeft.export.source import resolve

    source = resolve(run_dir)
    if source.recipe is None:
        raise EdgeftError(f"{run_dir}: compress needs a run folder from `edgeft tune` (with recipe.lock.yaml)")
    config = config or resolve_config(source.run_dir)
    profile = load_profile(target)
    output = Path(output or source.run_dir / "compress" / profile.name)
    work = output.parent / f".{output.name}.partial"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    storage = config.search.storage or str(source.run_dir / "compress" / "search" / f"{profile.name}.journal")
    if not resume and not config.search.storage:
        Path(storage).unlink(missing_ok=True)  # a fresh search; --resume continues the journal
    budget = config.search.time_budget_s
    started = time.time()
    setup = SearchSetup(source.run_dir, target, config, storage, f"compress-{profile.name}",
                        source.run_dir / "compress" / "cache", started + budget if budget else None, remote)
    with third_party_to(work / "search.log") as terminal:
        progress = SearchProgress(terminal, config.search.trials, setup.deadline, "validation")
        study, search = run_search(setup, progress, resume)
        summary, candidates, front = _choose(study, search, time.time() - started)
    _write(work, output, summary, candidates, front)
    return output


def _choose(study, search, seconds: float) -> tuple[dict, list, list]:
    """Front and best on validation; the test split once, for the front (and the best)."""
    from edgeft.compress import scoring
    from edgeft.compress.search import baseline_params, candidates_of, searched_seconds
    from edgeft.compress.select import choose, latency_tie, pareto_front

    setup, profile = search.setup, search.profile
    config, metric = setup.config, search.metric
    candidates = candidates_of(study)
    if not candidates:
        raise EdgeftError(f"no candidate could be measured in {len(study.trials)} trials; see search.log in "
                          f"{setup.run_dir / 'compress'}")
    reference = dict(study.user_attrs["reference"])
    budget_ms = config.budget_ms or profile.latency_budget_p50_ms
    memory_mb = config.memory_mb or profile.memory_budget_mb
    candidates, remeasured = _remeasure(candidates, search, reference[metric])
    tie = latency_tie(((remeasured or {}).get("aa") or {}).get("ci"))
    best, reason = choose(candidates, metric, reference[metric], budget_ms, memory_mb, search.max_drop,
                          config.objective, tie, search.task.metric_scale, config.size_mb)
    front = pareto_front(candidates, metric)
    tested = {c.bundle for c in front} | {best.bundle}
    if search.splits.test is not None:
        test = search.task.examples(search.splits.test, search.splits.labels)
        candidates = [replace(c, test=scoring.bundle_metrics(c.bundle, test, threads=profile.threads))
                      if c.bundle in tested else c for c in candidates]
        reference["test"] = scoring.model_metrics(search.task, search.teacher_dir, search.splits.test,
                                                  search.splits.labels)[metric]
    reference["validation"] = reference[metric]
    by_bundle = {c.bundle: c for c in candidates}
    front, best = [by_bundle[c.bundle] for c in front], by_bundle[best.bundle]
    baselines = [tuple(sorted(p.items())) for p in baseline_params(config, search.passes, search.export_choices)]
    tuned = {(c.format, c.precision): c for c in candidates if tuple(sorted(c.settings.items())) in baselines}
    states = Counter(t.state.name for t in study.trials)
    summary = {
        "run": str(setup.run_dir), "target": profile.name, "metric": metric, "best": best.name, "reason": reason,
        "budget_ms": budget_ms, "budget_statistic": "p50", "memory_mb": memory_mb,
        "size_mb": config.size_mb,
        "max_metric_drop": config.max_metric_drop, "metric_scale": search.task.metric_scale,
        "objective": config.objective, "latency_tie": tie,
        "latency_unit": "ms per decoded token" if search.task.generates else "ms per call, batch 1",
        "reference": {"validation": reference["validation"], "test": reference.get("test")},
        "seconds": seconds, "searched_seconds": searched_seconds(study), "storage": setup.storage,
        "study": setup.study_name, "remeasured": remeasured,
        "trials": {"finished": states["COMPLETE"] + states["PRUNED"], "complete": states["COMPLETE"],
                   "pruned": states["PRUNED"], "failed": states["FAIL"],
                   "stopped": dict(Counter(t.user_attrs["stopped"] for t in study.trials if "stopped" in t.user_attrs)),
                   "ended": study.user_attrs.get("converged") or "trial count or time budget reached"},
        "front": [c.name for c in sorted(front, key=lambda c: c.latency.p50_ms)],
        "passes": _pass_effects(front, tuned, metric), "bench_texts": config.bench.texts,
        "latency_source": ", ".join(sorted({c.latency.source.split(" (")[0] for c in candidates})),
        "config": config.model_dump(mode="json"),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return summary, candidates, front


def _remeasure(candidates: list, search, reference: float) -> tuple[list, dict | None]:
    """Time the candidates the choice is among (within the metric drop, and the front) again, together, under the
    bench protocol (interleaved rounds of fresh processes, an A/A row); their latencies become these. Estimated
    latencies are deterministic and stay."""
    from edgeft.bench import bundle_row, compare
    from edgeft.bench.measure import Remote
    from edgeft.compress.candidate import Latency
    from edgeft.compress.select import pareto_front, within_drop

    config, metric = search.setup.config, search.metric
    if not all(c.latency.source.startswith("measured") for c in candidates):
        return candidates, None
    close = {c.bundle for c in candidates if within_drop(c.validation[metric], reference, search.max_drop)}
    chosen = [c for c in candidates if c.bundle in close | {f.bundle for f in pareto_front(candidates, metric)}]
    if search.task.generates:
        return _retime_generation(candidates, chosen, search)
    remote = search.setup.remote or search.profile.ssh  # where the search measured (as `edgeft.bench.bench`)
    result = compare([bundle_row(c.bundle, c.name) for c in chosen], rounds=config.bench.final_rounds,
                     seconds=SEARCH_SECONDS, runs=config.bench.runs, warmup=config.bench.warmup,
                     threads=search.profile.threads, texts=search.bench_texts,
                     remote=Remote(remote, python=search.profile.python) if remote else None, progress=False)
    by_name = {row["name"]: row for row in result["rows"]}
    where = f"measured:{remote or 'host'} ({config.bench.final_rounds} interleaved rounds with the other finalists)"
    updated = []
    for c in candidates:
        row = by_name.get(c.name)
        if row is not None:
            samples = tuple(value for entry in row["rounds"] for value in entry["latencies_ms"])
            c = replace(c, latency=Latency(row["p50_ms"], row["p90_ms"], where, samples))
        updated.append(c)
    aa = result.get("aa") or {}
    return updated, {"candidates": [c.name for c in chosen], "rounds": config.bench.final_rounds,
                     "aa": {key: aa.get(key) for key in ("row", "value", "ci")}, "machine": result["machine"]}


def _retime_generation(candidates: list, chosen: list, search) -> tuple[list, dict]:
    """The finalists of a generating model timed again together per decoded token (interleaved fresh processes)."""
    from edgeft.compress.candidate import Latency
    from edgeft.compress.search import token_latencies

    rounds = search.setup.config.bench.final_rounds
    timed = token_latencies([c.bundle for c in chosen], search, rounds=rounds)
    updated = [replace(c, latency=Latency(row["p50_ms"], row["p90_ms"], row["source"], tuple(row["samples_ms"])))
               if (row := timed.get(str(c.bundle))) else c for c in candidates]
    return updated, {"candidates": [c.name for c in chosen], "rounds": rounds, "aa": {}}


def _pass_effects(front: list, tuned: dict, metric: str) -> list[dict]:
    """Each front candidate against the tuned model exported to the same format and precision."""
    return [
        {"candidate": c.name, "chain": list(c.chain),
         "metric_delta": c.validation[metric] - base.validation[metric],
         "speedup": base.latency.p50_ms / c.latency.p50_ms, "size_ratio": c.model_bytes / max(base.model_bytes, 1)}
        for c in sorted(front, key=lambda c: c.latency.p50_ms)
        if (base := tuned.get((c.format, c.precision))) is not None and base is not c
    ]


def _write(work: Path, output: Path, summary: dict, candidates: list, front: list) -> None:
    from edgeft.compress.report import plot_pareto, write_report

    best = next(c for c in candidates if c.name == summary["best"])
    shutil.copytree(best.bundle, work / "best")
    plot_pareto(candidates, front, summary, work / "pareto.png",
                f"{Path(summary['run']).name} on {summary['target']}")
    write_report(work / "report.md", summary, candidates, front)
    (work / "candidates.json").write_text(json.dumps(
        {"summary": summary, "candidates": [{**c.to_json(), "pareto": c.name in summary["front"]} for c in candidates]},
        indent=2))
    promote(work, output)
