"""The measurement protocol every edgeft latency comes from: interleaved rounds of fresh processes, one harness.

Every row (an edgeft bundle, PyTorch eager, a peer tool's model) is timed by the same loop
(`edgeft.runtime.bench.measure`) on the same real texts at their real token lengths, with the same threads, batch and
warm-up. There are R rounds; each round starts one fresh process per row, in a new random order, and each process
times calls for at least `seconds`. Latencies are pooled over rounds; p50 and p90 carry bootstrap intervals and a
speed-up ratio carries its own interval from the paired rounds (`edgeft.bench.stats`). The first row is also run a
second time as its own row (A/A): the ratio of a row to itself should be 1, and its interval is the noise floor of
the run. Every raw latency, the token lengths, the machine's CPU, load average and steal time are kept.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from edgeft.bench import stats
from edgeft.bench.measure import Remote, bench_args, measure_host, remote_session
from edgeft.errors import EdgeftError
from edgeft.runtime.bench import cpu_times, machine_info, reference_texts, system_state

ROUNDS = 5
SECONDS = 1.0
MIN_CALLS = 20
WARMUP = 10
AA_SUFFIX = " (A/A)"
# Kept from every process besides its raw latencies.
ROUND_FIELDS = ("load_ms", "first_inference_ms", "peak_rss_mb", "system", "runs")


@dataclass(frozen=True)
class Row:
    """One thing to time.

    Attributes:
        name: the row's name in reports.
        target: an edgeft bundle folder, or what `factory` builds its model from.
        factory: `module:function` with `function(target, threads)` returning an object with the Predictor's
            `encode(texts)` and `run(encoded)`; None for an edgeft bundle.
        python: the interpreter that runs it (a peer tool's own venv); None for this one.
    """

    name: str
    target: str
    factory: str | None = None
    python: str | None = None


def bundle_row(bundle: str | Path, name: str | None = None) -> Row:
    """A row for an edgeft bundle, named after its folder by default."""
    return Row(name or Path(bundle).name, str(Path(bundle).expanduser().resolve()))


def pytorch_row(model_dir: str | Path, name: str = "pytorch-fp32") -> Row:
    """A row for a classifier folder run in PyTorch eager (fp32), in the same loop as the bundles."""
    return Row(name, str(Path(model_dir).expanduser().resolve()), factory="edgeft.bench.eager:load")


def compare(rows: list[Row], *, rounds: int = ROUNDS, seconds: float = SECONDS, runs: int = MIN_CALLS,
            warmup: int = WARMUP, batch: int = 1, threads: int | None = None, texts: list[str] | None = None,
            seq_len: int | None = None, aa: bool = True, baselines: list[str] = (), seed: int = 0,
            remote: Remote | None = None, progress: bool = True) -> dict:
    """Time rows under the protocol and summarize them.

    Args:
        rows: what to compare (names must differ).
        rounds: interleaved rounds; each starts one fresh process per row, rows in a new random order.
        seconds: the least timed wall time per process.
        runs: the least timed calls per process.
        warmup: untimed calls per process after its first inference.
        batch: texts per call.
        threads: inference threads for every row (None: each runtime's default).
        texts: the real inputs every row cycles through; default: the first bundle row's reference sample.
        seq_len: synthetic texts of exactly this many tokens instead (for length sweeps).
        aa: also time the first row a second time as `<name> (A/A)`.
        baselines: names of rows to compute every other row's speed-up against (with intervals).
        seed: seeds the round orders and the bootstrap.
        remote: run bundle rows on this device over SSH instead of here (factory rows are not supported there).
        progress: show a progress bar.

    Returns:
        {"protocol", "machine", "inputs", "rows": [summary per row, raw rounds included], "aa", "created"}.
    """
    rows = list(rows)
    _check(rows, rounds, seconds, runs, warmup, batch, threads, remote)
    if texts is None and seq_len is None:
        texts = _default_texts(rows)
    if aa:
        rows.append(Row(rows[0].name + AA_SUFFIX, rows[0].target, rows[0].factory, rows[0].python))
    order_rng = random.Random(seed)
    orders = [order_rng.sample(range(len(rows)), len(rows)) for _ in range(rounds)]
    samples: list[list[dict]] = [[] for _ in rows]
    loadavg_before, times_before = system_state(None)["loadavg"], cpu_times()
    with tempfile.TemporaryDirectory(prefix="edgeft-bench-") as scratch:
        texts_file = None
        if texts:
            texts_file = Path(scratch) / "texts.json"
            texts_file.write_text(json.dumps(list(texts)))
        args = bench_args(runs, warmup, batch, seq_len, threads, texts_file, seconds)
        with _launcher(rows, remote, texts_file) as launch, _bar(progress, rounds * len(rows)) as advance:
            for order in orders:
                for index in order:
                    advance(f"round {len(samples[index]) + 1}/{rounds}: {rows[index].name}")
                    samples[index].append(launch(rows[index], args))
    machine = {**machine_info(), "loadavg_before": loadavg_before, **_load_after(times_before)}
    summaries = [_summarize(row, reports, batch) for row, reports in zip(rows, samples)]
    for baseline in [name for name in baselines if name in {row.name for row in rows}]:
        add_ratios(summaries, baseline, seed)
    result = {
        "protocol": {"rounds": rounds, "seconds_per_process": seconds, "min_calls": runs, "warmup": warmup,
                     "batch": batch, "threads": threads, "seed": seed, "aa": aa,
                     "orders": [[rows[i].name for i in order] for order in orders],
                     "bootstrap": f"{stats.RESAMPLES} resamples of rounds, then of calls within each round; "
                                  f"{stats.CONFIDENCE:.0%} percentile intervals; ratios resample paired rounds"},
        "machine": machine,
        "inputs": _inputs(texts, seq_len, summaries),
        "rows": summaries,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if aa:
        result["aa"] = {"row": rows[0].name, **stats.ratio_ci(_rounds(summaries[0]), _rounds(summaries[-1]),
                                                              seed=seed)}
    return result


def add_ratios(summaries: list[dict], baseline: str, seed: int = 0) -> None:
    """Add `ratio_vs[baseline]` = {value, ci, per_round} (baseline p50 / row p50) to every row."""
    base = next(summary for summary in summaries if summary["name"] == baseline)
    for summary in summaries:
        summary.setdefault("ratio_vs", {})[baseline] = stats.ratio_ci(_rounds(base), _rounds(summary), seed=seed)


def _summarize(row: Row, reports: list[dict], batch: int) -> dict:
    first = reports[0]
    pooled = [value for report in reports for value in report["latencies_ms"]]
    p50 = stats.percentile_ci([report["latencies_ms"] for report in reports], 50)
    p90 = stats.percentile_ci([report["latencies_ms"] for report in reports], 90)
    return {
        **asdict(row),
        "p50_ms": p50["value"], "p50_ci_ms": p50["ci"], "p90_ms": p90["value"], "p90_ci_ms": p90["ci"],
        "mean_ms": sum(pooled) / len(pooled),
        "throughput_per_s": batch * 1e3 * len(pooled) / sum(pooled),
        "calls": len(pooled),
        "peak_rss_mb": max(report["peak_rss_mb"] for report in reports),
        "model_bytes": first.get("model_bytes"),
        "format": first.get("format"), "precision": first.get("precision"),
        "batch": first.get("batch"), "seq_len": first.get("seq_len"),
        "padded_lengths": sorted(set(first.get("padded_lengths") or [])),
        "input_shape": first.get("input_shape"), "self_check": first.get("self_check"),
        "runtime_versions": first.get("runtime_versions", {}),
        "token_lengths": first.get("token_lengths"),
        "rounds": [{"latencies_ms": report["latencies_ms"], **{key: report.get(key) for key in ROUND_FIELDS}}
                   for report in reports],
    }


def _rounds(summary: dict) -> list[list[float]]:
    return [entry["latencies_ms"] for entry in summary["rounds"]]


def _inputs(texts: list[str] | None, seq_len: int | None, summaries: list[dict]) -> dict:
    lengths = summaries[0].get("token_lengths") or []
    return {"texts": len(texts) if texts else None, "seq_len": seq_len,
            "token_lengths": stats.summary(lengths) if lengths else None,
            "padded_lengths": {s["name"]: s["padded_lengths"] for s in summaries}}


def _default_texts(rows: list[Row]) -> list[str] | None:
    for row in rows:
        manifest = Path(row.target) / "manifest.json"
        if row.factory is None and manifest.is_file():
            return reference_texts(json.loads(manifest.read_text())) or None
    return None


def _load_after(times_before) -> dict:
    state = system_state(times_before)
    return {"loadavg_after": state["loadavg"], "steal_pct": state["steal_pct"], "busy_pct": state["busy_pct"]}


class _launcher:
    """Context manager yielding `launch(row, args) -> report`: a fresh process here, or on the remote device."""

    def __init__(self, rows: list[Row], remote: Remote | None, texts_file: Path | None):
        self.rows, self.remote, self.texts_file, self.session = rows, remote, texts_file, None

    def __enter__(self):
        if self.remote is None:
            return lambda row, args: measure_host(Path(row.target), [*args, *_factory_args(row)], row.python)
        bundles = sorted({Path(row.target) for row in self.rows})
        formats = {json.loads((bundle / "manifest.json").read_text()).get("format", "onnx") for bundle in bundles}
        self.session = remote_session(self.remote, bundles, self.texts_file, sorted(formats)[0])
        measure = self.session.__enter__()
        return lambda row, args: measure(Path(row.target), args)

    def __exit__(self, *exc):
        return self.session.__exit__(*exc) if self.session else False


def _factory_args(row: Row) -> list[str]:
    return ["--factory", row.factory] if row.factory else []


class _bar:
    """A rich progress bar on a terminal, plain lines on stderr otherwise; yields `advance(description)`."""

    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total, self.done, self.progress = enabled, total, 0, None

    def __enter__(self):
        from rich.progress import Progress

        if self.enabled and sys.stderr.isatty():
            self.progress = Progress(transient=True)
            self.progress.__enter__()
            self.task = self.progress.add_task("bench", total=self.total)

        def advance(description: str) -> None:
            if self.progress:
                self.progress.update(self.task, description=description, completed=self.done)
            elif self.enabled:
                print(f"[{self.done + 1}/{self.total}] {description}", file=sys.stderr, flush=True)
            self.done += 1

        return advance

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc) if self.progress else False


def _check(rows, rounds, seconds, runs, warmup, batch, threads, remote) -> None:
    """Every problem with the arguments at once, before anything runs."""
    problems = [f"--{name}: must be >= {low} (got {value})"
                for name, value, low in [("rounds", rounds, 1), ("seconds", seconds, 0), ("runs", runs, 1),
                                         ("warmup", warmup, 0), ("batch", batch, 1), ("threads", threads, 1)]
                if value is not None and value < low]
    names = [row.name for row in rows]
    problems += [f"row name {name!r} is used twice" for name in sorted({n for n in names if names.count(n) > 1})]
    problems += [f"{row.target}: not a bundle folder (no manifest.json); make one with `edgeft export`"
                 for row in rows if row.factory is None and not (Path(row.target) / "manifest.json").is_file()]
    if not rows:
        problems.append("nothing to bench: no rows")
    if remote is not None:
        problems += [f"{row.name}: only bundles run on a remote device" for row in rows if row.factory]
    if problems:
        raise EdgeftError(problems)
