"""How far each candidate is from this host's floor: measured latency divided by the time its arithmetic and memory
traffic need at the host's measured peaks.

Usage:
    python -m benchmarks.roofline BUNDLE... [--threads 2] [--rounds 3] [--seconds 1]

The host's peaks are measured, not taken from a data sheet: a large (2048^3) matrix product in ONNX Runtime in fp32
(MatMul) and int8 (MatMulInteger) at the benchmark's threads, and the memory bandwidth as the median of numpy copies
of a 256 MiB array (read + write). Each ONNX bundle's FLOPs (by precision) and bytes moved are counted from its graph
(`edgeft.bench.flops`) at every reference text's real length; the floor of one text is
max(fp32 FLOPs / fp32 peak + int8 OPs / int8 peak, bytes / bandwidth). The bundles are timed together under the
bench protocol on those texts. Writes `benchmarks/results/roofline.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PEAK_GEMM = (1, 2048, 2048, 2048)


def memory_bandwidth_gbs(mib: int = 256, repeats: int = 7) -> float:
    """Median GB/s of copying a `mib` MiB array (bytes read + written)."""
    source = np.ones(mib * 2**20 // 8, np.float64)
    target = np.empty_like(source)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(target, source)
        seconds.append(time.perf_counter() - start)
    return 2 * source.nbytes / statistics.median(seconds) / 1e9


def floor_ms(bundle: Path, lengths: list[int], peaks: dict) -> dict:
    """Mean over texts of the roofline floor at each text's length (batch 1), with the FLOPs behind it."""
    from edgeft.bench import flops

    graph = flops.bundle_graph(bundle)
    per_length = {}
    for length in sorted(set(lengths)):
        cost = flops.count(graph, 1, length)
        by_precision = cost.flops_by("precision")
        compute = sum(value / (peaks["gflops"].get(name, peaks["gflops"]["fp32"]) * 1e9)
                      for name, value in by_precision.items())
        memory = cost.bytes / (peaks["bandwidth_gbs"] * 1e9)
        per_length[length] = {"floor_ms": max(compute, memory) * 1e3, "gflops": cost.flops / 1e9,
                              "mbytes": cost.bytes / 1e6, "bound": "compute" if compute >= memory else "memory"}
    floors = [per_length[length]["floor_ms"] for length in lengths]
    return {"floor_ms": float(np.mean(floors)), "gflops_per_text": float(np.mean([per_length[n]["gflops"]
                                                                                  for n in lengths])),
            "by_length": per_length}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args(argv)
    from edgeft.bench import bundle_row, compare
    from edgeft.bench.roofline import _matmul_gflops

    peaks = {"gflops": {"fp32": _matmul_gflops(args.threads, False, PEAK_GEMM),
                        "int8": _matmul_gflops(args.threads, True, PEAK_GEMM)},
             "bandwidth_gbs": memory_bandwidth_gbs(), "threads": args.threads, "loadavg": list(os.getloadavg())}
    result = compare([bundle_row(bundle, f"{bundle.parent.name}/{bundle.name}") for bundle in args.bundles],
                     rounds=args.rounds, seconds=args.seconds, threads=args.threads)
    rows = []
    for summary, bundle in zip(result["rows"], args.bundles):
        floor = floor_ms(bundle, summary["token_lengths"], peaks)
        rows.append({"name": summary["name"], "p50_ms": summary["p50_ms"], "p50_ci_ms": summary["p50_ci_ms"],
                     **floor, "measured_over_floor": summary["p50_ms"] / floor["floor_ms"]})
        print(f"{summary['name']}: p50 {summary['p50_ms']:.3f} ms, floor {floor['floor_ms']:.3f} ms "
              f"({floor['gflops_per_text']:.3f} GFLOP per text) -> {rows[-1]['measured_over_floor']:.1f}x the floor")
    print(f"host peaks: fp32 {peaks['gflops']['fp32']:.0f} GFLOP/s, int8 {peaks['gflops']['int8']:.0f} GOP/s, "
          f"memory {peaks['bandwidth_gbs']:.1f} GB/s ({args.threads} threads, load {peaks['loadavg'][0]:.1f}); "
          f"A/A {result['aa']['value']:.2f}x [{result['aa']['ci'][0]:.2f}, {result['aa']['ci'][1]:.2f}]")
    RESULTS.mkdir(exist_ok=True)
    output = RESULTS / "roofline.json"
    output.write_text(json.dumps({"command": " ".join(["python -m benchmarks.roofline", *sys.argv[1:]]),
                                  "peaks": peaks, "rows": rows, "machine": result["machine"],
                                  "aa": result["aa"]}, indent=1))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
