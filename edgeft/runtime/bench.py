"""The timing loop `edgeft bench` runs on the host and on devices: `python -m edgeft.runtime bench BUNDLE --json -`.

Only the standard library and numpy are imported here (plus the bundle's own runtime through
`edgeft.runtime.load`), so the numbers are those of the light runtime a device runs, and the peak RSS is that of a
process holding one model, not of a PyTorch toolchain. Like ONNX Runtime's perf test and TFLite's benchmark_model:
load, one first inference, warm-up runs, then timed runs of `Predictor.run` on pre-encoded real-length inputs
(tokenization is not timed) for at least `runs` calls and at least `seconds` of wall time, reported as percentiles
with every raw latency, the token lengths of every input, the padded length the backend actually ran (TFLite pads
to fixed-shape buckets), and the machine's load and CPU steal during the sample.

`--factory module:function` times any object with the Predictor's `encode`/`run` (e.g. PyTorch eager, or a peer
tool's model) in this same loop: `function(target, threads)` builds it, `target` being the positional argument.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

# Short, ordinary words that are one WordPiece token each in BERT-style uncased vocabularies, so a text of
# n-2 of them encodes to exactly n tokens ([CLS] ... [SEP]).
_WORDS = "my card payment was declined and i want to know why the money has not arrived yet".split()


def reference_texts(manifest: dict) -> list[str]:
    """The bundle's reference sample of real test texts (older bundles: its self-check texts)."""
    sample = manifest.get("reference_sample") or manifest.get("self_check") or {}
    return list(sample.get("texts") or [])


def sample_texts(batch: int, seq_len: int | None, manifest: dict) -> list[str]:
    """Inputs to time: the bundle's reference texts (real lengths), or texts of exactly `seq_len` tokens."""
    if seq_len is None:
        texts = reference_texts(manifest)
        texts = texts or [" ".join(_WORDS[:12])]
        return [texts[index % len(texts)] for index in range(batch)]
    words = [_WORDS[index % len(_WORDS)] for index in range(max(seq_len - 2, 1))]
    return [" ".join(words)] * batch


def percentiles(latencies_ms: list[float]) -> dict[str, float]:
    """p50/p90/p99/mean/std/min/max of a list of latencies, in ms."""
    values = np.asarray(latencies_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "mean_ms": float(values.mean()),
            "std_ms": float(values.std()), "min_ms": float(values.min()), "max_ms": float(values.max())}


def peak_rss_mb() -> float:
    """High-water resident memory of this process, MiB.

    Linux: VmHWM of /proc/self/status, because ru_maxrss survives exec and so would report the launching
    process's size (a bench started from a 500 MiB toolchain would show 500 MiB). Elsewhere ru_maxrss
    (bytes on macOS, KiB on other systems).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 2**10
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def measure(load: Callable[[], object], runs: int = 100, warmup: int = 10, batch: int = 1,
            seq_len: int | None = None, texts: list[str] | None = None, seconds: float = 0.0) -> dict:
    """Time one model: load, first inference, warm-up, then timed calls of `Predictor.run`.

    Args:
        load: returns a Predictor (`encode`, `run`, `manifest`, `runtime_versions`; loaded without its
            self-check, which runs after the timings); its time is the load time.
        runs: the least number of timed calls after warm-up.
        warmup: untimed runs after the first inference (caches, thread pools, lazy kernel selection).
        batch: texts per call.
        seq_len: tokens per text; None uses all of the bundle's reference texts at their real lengths.
        texts: real inputs to cycle through, `batch` per call (overrides `seq_len`); the same list for every
            bundle makes candidates comparable.
        seconds: the least wall time of the timed sample; calls go on until both `runs` and `seconds` are reached.

    Returns:
        The report: latency percentiles (ms), throughput (items/s), load and first-inference time, peak RSS,
        input shape, runtime versions and the machine it ran on, and the raw sample: `latencies_ms` (call i ran
        input chunk i % len(chunks)), `token_lengths` (real tokens of every text, chunk after chunk),
        `padded_lengths` (the length each chunk ran at) and `system` (load average, CPU steal during the sample).
    """
    rss_before = peak_rss_mb()
    start = time.perf_counter()
    predictor = load()
    load_ms = (time.perf_counter() - start) * 1e3
    # The bundle's self-check runs after the first inference so that it does not warm the timed one.
    manifest = dict(getattr(predictor, "manifest", {}) or {})
    if not texts and seq_len is None:
        texts = reference_texts(manifest)
    if texts:
        texts = list(texts) * -(-batch // len(texts))  # at least one full batch
        chunks = [texts[start:start + batch] for start in range(0, len(texts) - batch + 1, batch)]
    else:
        chunks = [sample_texts(batch, seq_len, manifest)]
    # Tokenization is done up front: the timed call is the backend's alone, for every candidate alike.
    inputs = [predictor.encode(chunk) for chunk in chunks]
    start = time.perf_counter()
    predictor.run(inputs[0])
    first_ms = (time.perf_counter() - start) * 1e3
    for index in range(warmup):
        predictor.run(inputs[index % len(inputs)])
    latencies = []
    before = cpu_times()
    deadline = time.perf_counter() + seconds
    while len(latencies) < runs or time.perf_counter() < deadline:
        encoded = inputs[len(latencies) % len(inputs)]
        start = time.perf_counter_ns()
        predictor.run(encoded)
        latencies.append((time.perf_counter_ns() - start) / 1e6)
    system = system_state(before)
    lengths = [next(iter(encoded.values())).shape[-1] for encoded in inputs]
    stats = percentiles(latencies)
    has_check = bool(manifest.get("self_check")) and callable(getattr(predictor, "self_check", None))
    problem = predictor.self_check() if has_check else None
    shape = list(next(iter(inputs[0].values())).shape)
    return {
        **stats,
        "throughput_per_s": batch * 1e3 / stats["mean_ms"],
        "load_ms": load_ms,
        "first_inference_ms": first_ms,
        "peak_rss_mb": peak_rss_mb(),
        "baseline_rss_mb": rss_before,
        "runs": len(latencies),
        "warmup": warmup,
        "batch": batch,
        "seq_len": round(sum(lengths) / len(lengths)) if len(shape) > 1 else None,
        "input_shape": shape,
        "self_check": (problem or "passed") if has_check else "none in bundle",
        "format": manifest.get("format"),
        "precision": manifest.get("precision"),
        "runtime_versions": dict(getattr(predictor, "runtime_versions", {}) or {}),
        **({"model_bytes": predictor.model_bytes} if hasattr(predictor, "model_bytes") else {}),
        "machine": machine_info(),
        "system": system,
        "latencies_ms": [round(value, 5) for value in latencies],
        "token_lengths": [length for encoded in inputs for length in real_lengths(encoded)],
        "padded_lengths": lengths,
    }


def real_lengths(encoded: dict) -> list[int]:
    """Tokens of each row before padding (the attention mask's sum; the full width when there is no mask)."""
    mask = encoded.get("attention_mask")
    if mask is None:
        first = next(iter(encoded.values()))
        return [int(first.shape[-1])] * int(first.shape[0])
    return [int(value) for value in np.asarray(mask).sum(axis=-1)]


def cpu_times() -> list[int] | None:
    """The aggregate `cpu` line of /proc/stat (user nice system idle iowait irq softirq steal ...), or None."""
    try:
        return [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None


def system_state(before: list[int] | None) -> dict:
    """Load average now and the share of CPU time stolen by the hypervisor (and spent busy) since `before`."""
    after = cpu_times()
    state = {"loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
             "steal_pct": None, "busy_pct": None}
    if before and after and len(after) >= 8:
        delta = [b - a for a, b in zip(before, after)]
        total = sum(delta[:8]) or 1
        state["steal_pct"] = 100.0 * delta[7] / total
        state["busy_pct"] = 100.0 * (total - delta[3] - delta[4]) / total
    return state


def machine_info() -> dict:
    """Where the numbers were taken: host name, CPU, cores, OS, Python."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Hardware")):
                cpu = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return {"hostname": platform.node(), "cpu": cpu, "cores": os.cpu_count(), "arch": platform.machine(),
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version()}


def _factory(spec: str, target: Path, threads: int | None) -> Callable[[], object]:
    import importlib

    module, _, function = spec.partition(":")
    return lambda: getattr(importlib.import_module(module), function)(str(target), threads)


def model_bytes(bundle: Path) -> int:
    """Bytes of the model files in a bundle (weights and graph; tokenizer and manifest excluded)."""
    return sum(path.stat().st_size for path in bundle.iterdir()
               if path.is_file() and path.name.startswith("model."))


def main(argv: list[str] | None = None) -> int:
    """`python -m edgeft.runtime bench BUNDLE [--runs N] [--warmup N] [--batch N] [--seq-len N] [--threads N]
    [--json FILE|-]`: prints a short summary, or the JSON report to a file or stdout (`-`)."""
    parser = argparse.ArgumentParser(prog="python -m edgeft.runtime bench", description=main.__doc__)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--runs", type=int, default=100, help="the least number of timed calls")
    parser.add_argument("--seconds", type=float, default=0.0, help="the least wall time of the timed sample")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--texts", type=Path, default=None, help="a JSON list of real input texts to cycle through")
    parser.add_argument("--json", default=None, help="write the report here; - for stdout")
    parser.add_argument("--factory", default=None,
                        help="module:function(target, threads) building what to time instead of a bundle")
    args = parser.parse_args(argv)
    if (args.runs < 1 or args.warmup < 0 or args.batch < 1 or args.seconds < 0
            or (args.seq_len is not None and args.seq_len < 3)):
        parser.error("--runs and --batch must be >= 1, --warmup and --seconds >= 0, --seq-len >= 3")
    from edgeft.errors import EdgeftError
    from edgeft.runtime import load

    try:
        texts = json.loads(args.texts.read_text()) if args.texts else None
        loader = _factory(args.factory, args.bundle, args.threads) if args.factory else (
            lambda: load(args.bundle, threads=args.threads, self_check=False))
        report = measure(loader, args.runs, args.warmup, args.batch, args.seq_len, texts, args.seconds)
    except EdgeftError as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return error.exit_code
    report["threads"] = args.threads
    report.setdefault("model_bytes", model_bytes(args.bundle) if args.bundle.is_dir() else None)
    if args.json == "-":
        print(json.dumps(report))
    elif args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    else:
        print(f"p50 {report['p50_ms']:.2f} ms  p90 {report['p90_ms']:.2f} ms  p99 {report['p99_ms']:.2f} ms  "
              f"{report['throughput_per_s']:.1f}/s  peak RSS {report['peak_rss_mb']:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
