"""`edgeft bench`: a bundle's latency measured on the host, on a device over SSH, or estimated by a roofline.

Measurements follow the protocol of `edgeft.bench.protocol` (interleaved rounds of fresh processes, time-based
samples, bootstrap intervals, an A/A row); `compare(rows)` is the entry point for comparing several things.

Every report says where its numbers came from (`source`): `measured:host (<cpu>)`, `measured:ssh://...`, or
`estimated (host error ±x%)`, the last with the estimator's error measured on this host for the same bundle.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from edgeft.bench import flops, protocol, roofline
from edgeft.bench.measure import Remote, bench_args, measure_host
from edgeft.bench.protocol import MIN_CALLS, ROUNDS, SECONDS, WARMUP, Row, bundle_row, compare, pytorch_row
from edgeft.devices import HOST, DeviceProfile, load_profile
from edgeft.errors import EdgeftError

__all__ = ["bench", "bench_many", "compare", "Row", "bundle_row", "pytorch_row", "measured_report", "Remote"]

# The host measurement that an estimated report uses to measure the estimator's error: its runs, and one thread,
# because on a shared or oversubscribed host every multi-threaded op waits for a descheduled worker (2 threads ran
# MiniLM 2x slower than 1 here), which says nothing about the estimator.
CHECK_RUNS = 30
CHECK_THREADS = 1


def bench(bundle: str | Path, profile: str | Path | DeviceProfile = HOST, runs: int = MIN_CALLS,
          warmup: int = WARMUP, batch: int = 1, seq_len: int | None = None, threads: int | None = None,
          remote: str | Remote | None = None, texts: list[str] | None = None, graph: Path | None = None,
          rounds: int = ROUNDS, seconds: float = SECONDS, aa: bool = False) -> dict:
    """Benchmark one bundle for one device.

    Measured on the host when the profile is `host`, over SSH when `remote` is given (or the profile has `ssh`),
    both under the protocol of `edgeft.bench.protocol` (`rounds` fresh processes, each timing at least `runs`
    calls and `seconds`); otherwise estimated from the graph's FLOPs and bytes with the profile's peaks,
    calibrated on the host. To compare several bundles, time them together with `protocol.compare` (interleaved).

    Args:
        bundle: a bundle folder from `edgeft export`.
        profile: a device name, a profile YAML path, or a loaded DeviceProfile.
        runs: the least timed calls per process.
        warmup: untimed calls per process before timing.
        batch: texts per call.
        seq_len: tokens per text; None uses the bundle's reference sample of real texts at their real lengths.
        threads: inference threads; None uses the profile's default.
        remote: `ssh://user@host[:port]` or a Remote with options.
        texts: real input texts to cycle through (overrides `seq_len`); pass the same list to compare bundles.
        graph: for an estimate of a non-ONNX bundle, the ONNX graph of the same model and precision to count
            FLOPs and bytes from (the roofline depends on the arithmetic, not on the runtime).
        rounds: fresh processes (rounds) to pool.
        seconds: the least timed wall time per process.
        aa: also time the bundle as a second, interleaved row and report the A/A ratio (the run's noise floor).

    Returns:
        The report: p50_ms (+ p50_ci_ms), p90_ms (+ p90_ci_ms), p99_ms, mean_ms, throughput_per_s, load_ms,
        first_inference_ms, peak_rss_mb, model_bytes, source, runtime_versions, target, the raw `samples` of every
        round, token and padded lengths, `protocol`, `machine` ... (estimates add `estimate` and `host_check`).
    """
    _check_inputs(bundle, runs, warmup, batch, seq_len, threads)
    bundle = Path(bundle).expanduser().resolve()
    target = profile if isinstance(profile, DeviceProfile) else load_profile(profile)
    threads = threads or target.threads
    remote = remote or (Remote(target.ssh, python=target.python) if target.ssh else None)
    if isinstance(remote, str):
        remote = Remote(remote, python=target.python)
    if remote is None and target.name != HOST:
        with tempfile.TemporaryDirectory() as scratch:
            texts_file = None
            if texts:
                texts_file = Path(scratch) / "texts.json"
                texts_file.write_text(json.dumps(list(texts)))
            report = estimate(bundle, target, batch, seq_len, threads, texts_file, graph)
    else:
        result = protocol.compare([protocol.bundle_row(bundle)], rounds=rounds, seconds=seconds, runs=runs,
                                  warmup=warmup, batch=batch, threads=threads, texts=texts, seq_len=seq_len, aa=aa,
                                  remote=remote, progress=False)
        report = measured_report(result, result["rows"][0], remote)
    return _finish(report, bundle, target, threads)


def measured_report(result: dict, row: dict, remote: Remote | None = None) -> dict:
    """One row of a `protocol.compare` result as a bench report (the shape `edgeft bench --json` writes)."""
    from edgeft.runtime.bench import percentiles

    pooled = [value for entry in row["rounds"] for value in entry["latencies_ms"]]
    median = lambda key: float(statistics.median(entry[key] for entry in row["rounds"]))  # noqa: E731
    where = remote.url if remote else "host"
    report = {
        **percentiles(pooled),
        **{key: row[key] for key in ("p50_ms", "p50_ci_ms", "p90_ms", "p90_ci_ms", "throughput_per_s", "peak_rss_mb",
                                     "model_bytes", "batch", "seq_len", "input_shape", "self_check", "format",
                                     "precision", "runtime_versions", "token_lengths", "padded_lengths")},
        "load_ms": median("load_ms"), "first_inference_ms": median("first_inference_ms"),
        "runs": row["calls"], "rounds": len(row["rounds"]), "ratio_vs": row.get("ratio_vs", {}),
        "source": f"measured:{where} ({result['machine']['cpu']})",
        "machine": result["machine"], "protocol": result["protocol"], "inputs": result["inputs"],
        "aa": result.get("aa"), "samples": row["rounds"], "samples_ms": pooled,
    }
    return report


def _finish(report: dict, bundle: Path, target: DeviceProfile, threads: int) -> dict:
    manifest = json.loads((bundle / "manifest.json").read_text())
    report.update(bundle=str(bundle), target=target.name, threads=threads,
                  created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    if not report.get("model_bytes"):
        report["model_bytes"] = sum(entry.get("bytes", 0) for name, entry in manifest.get("files", {}).items()
                                    if name.startswith("model."))
    return report


def bench_many(bundles: list[str | Path], profile: str | Path = HOST, compare: bool = False,
               remote: str | None = None, remote_python: str | None = None, ssh_options: list[str] = (),
               install: Path | None = None, json_path: Path | None = None, plot: Path | None = None,
               **settings) -> list[dict]:
    """What `edgeft bench` does: time each bundle (one, or several with `compare`, interleaved in the same rounds,
    with an A/A row of the first), then write the JSON and, when comparing, the PNG chart. `settings` are bench()'s
    runs, warmup, batch, seq_len, threads, rounds and seconds."""
    from edgeft.bench import report

    if len(bundles) > 1 and not compare:
        raise EdgeftError(f"got {len(bundles)} bundles; pass --compare to bench several side by side")
    for bundle in bundles:
        _check_inputs(bundle, settings.get("runs", MIN_CALLS), settings.get("warmup", WARMUP),
                      settings.get("batch", 1), settings.get("seq_len"), settings.get("threads"))
    target = load_profile(profile)
    if remote or remote_python or ssh_options or install:
        url = remote or target.ssh
        if not url:
            raise EdgeftError("--remote-python, --ssh-option and --install need --remote ssh://user@host")
        remote = Remote(url, python=remote_python or target.python, options=list(ssh_options), install=install)
    elif target.ssh:
        remote = Remote(target.ssh, python=target.python)
    if remote is None and target.name != HOST:
        reports = [bench(bundle, target, **settings) for bundle in bundles]
    else:
        reports = _measure_together([Path(b).expanduser().resolve() for b in bundles], target, remote, settings)
    if json_path:
        report.write_json(reports, json_path)
    if compare and plot:
        report.compare_plot(reports, plot)
    return reports


def _measure_together(bundles: list[Path], target: DeviceProfile, remote: Remote | None, settings: dict) -> list:
    threads = settings.pop("threads", None) or target.threads
    names = [bundle.name if [b.name for b in bundles].count(bundle.name) == 1 else f"{bundle.name}#{index + 1}"
             for index, bundle in enumerate(bundles)]
    rows = [protocol.bundle_row(bundle, name) for bundle, name in zip(bundles, names)]
    result = protocol.compare(rows, threads=threads, aa=True, baselines=[names[0]], remote=remote, **settings)
    return [_finish(measured_report(result, row, remote), bundle, target, threads)
            for row, bundle in zip(result["rows"], bundles)]


def estimate(bundle: Path, target: DeviceProfile, batch: int, seq_len: int | None, threads: int,
             texts_file: Path | None = None, graph: Path | None = None) -> dict:
    """Roofline estimate for `target`, with the estimator's error measured on the host for the same bundle.

    The host measurement (the bundle's own runtime, CHECK_RUNS runs) fixes the real sequence length, gives the
    peak RSS (the same runtime and model on the device hold about the same memory), and is compared with the
    estimator's prediction for the host: that relative error is printed with every estimate.
    """
    graph = Path(graph) if graph else flops.bundle_graph(bundle)
    host = load_profile(HOST)
    measured = measure_host(bundle, bench_args(CHECK_RUNS, 5, batch, seq_len, CHECK_THREADS, texts_file))
    cost = flops.count(graph, batch, measured["seq_len"] or seq_len or 128)
    calibration = {**roofline.calibrate(CHECK_THREADS), "gemm": roofline.gemm_efficiency(cost, CHECK_THREADS)}
    host_estimate = roofline.estimate_ms(cost, host, CHECK_THREADS, calibration)
    error_pct = (host_estimate["latency_ms"] - measured["p50_ms"]) / measured["p50_ms"] * 100
    result = roofline.estimate_ms(cost, target, threads, calibration)
    latency = result["latency_ms"]
    # The roofline gives one time; the tail is the bundle's runtime's own spread, as measured on the host.
    tail = {key: latency * measured[key] / measured["p50_ms"] for key in ("p90_ms", "p99_ms", "mean_ms")}
    return {
        "p50_ms": latency, **tail,
        "throughput_per_s": batch * 1e3 / tail["mean_ms"],
        "peak_rss_mb": measured["peak_rss_mb"],
        "model_bytes": measured.get("model_bytes"),
        "batch": batch, "seq_len": measured["seq_len"], "format": measured.get("format"),
        "precision": measured.get("precision"), "runtime_versions": measured.get("runtime_versions", {}),
        "source": f"estimated (host error {error_pct:+.0f}%)",
        "estimate": {**result, "graph": str(graph), "gflops": cost.flops / 1e9, "gflops_by_precision":
                     {name: value / 1e9 for name, value in cost.flops_by("precision").items()},
                     "mbytes_moved": cost.bytes / 1e6, "nodes": len(cost.nodes), "uncounted_ops": cost.uncounted,
                     "calibration": calibration},
        "host_check": {"measured_p50_ms": measured["p50_ms"], "estimated_ms": host_estimate["latency_ms"],
                       "error_pct": error_pct, "cpu": measured["machine"]["cpu"], "threads": CHECK_THREADS},
    }


def _check_inputs(bundle: str | Path, runs: int, warmup: int, batch: int, seq_len: int | None,
                  threads: int | None) -> None:
    """Every problem with the arguments at once, before anything runs."""
    problems = [] if (Path(bundle).expanduser() / "manifest.json").is_file() else [
        f"{bundle}: not a bundle folder (no manifest.json); make one with `edgeft export`"]
    problems += [f"--{name}: must be >= {low} (got {value})"
                 for name, value, low in [("runs", runs, 1), ("warmup", warmup, 0), ("batch", batch, 1),
                                          ("seq-len", seq_len, 3), ("threads", threads, 1)]
                 if value is not None and value < low]
    if problems:
        raise EdgeftError(problems)
