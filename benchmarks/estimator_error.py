"""The roofline estimator's error on this host, over bundles and sequence lengths.

For each bundle and length, `edgeft bench --target <profile>` measures the bundle on the host and estimates the host
from the graph; this prints both and their relative error (the figure every estimated report carries).

    python benchmarks/estimator_error.py BUNDLE [BUNDLE ...] [--seq-lens 16 64 128] [--target rpi4]
"""

from __future__ import annotations

import argparse

from edgeft.bench import bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundles", nargs="+")
    parser.add_argument("--seq-lens", nargs="+", type=int, default=[16, 64, 128])
    parser.add_argument("--target", default="rpi4", help="the device also estimated (its figure is printed too)")
    args = parser.parse_args()
    print(f"| bundle | seq | host measured p50 ms | host estimated ms | error | {args.target} estimated ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    errors = []
    for bundle in args.bundles:
        for seq_len in args.seq_lens:
            report = bench(bundle, args.target, seq_len=seq_len)
            check = report["host_check"]
            errors.append(abs(check["error_pct"]))
            print(f"| {bundle} | {seq_len} | {check['measured_p50_ms']:.2f} | {check['estimated_ms']:.2f} | "
                  f"{check['error_pct']:+.0f}% | {report['p50_ms']:.2f} |")
    print(f"\nmean absolute error: {sum(errors) / len(errors):.0f}% over {len(errors)} cases")


if __name__ == "__main__":
    main()
