"""Bench reports for people and machines: a rich table, a JSON file, and a PNG bar chart comparing bundles."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgeft.errors import missing_extra

# (report key, column label, format)
ROWS = [
    ("p50_ms", "p50", "{:.2f} ms"),
    ("p90_ms", "p90", "{:.2f} ms"),
    ("p99_ms", "p99", "{:.2f} ms"),
    ("mean_ms", "mean", "{:.2f} ms"),
    ("throughput_per_s", "throughput", "{:.1f} /s"),
    ("load_ms", "load", "{:.0f} ms"),
    ("first_inference_ms", "first inference", "{:.2f} ms"),
    ("peak_rss_mb", "peak RSS", "{:.0f} MiB"),
    ("model_bytes", "model size", "{:,} B"),
]


def table(reports: list[dict]) -> Table:
    """One column per report, one row per measure, headed by where the numbers came from."""
    grid = Table(title="edgeft bench", show_lines=False)
    grid.add_column("")
    for report in reports:
        grid.add_column(f"{Path(report['bundle']).name}\n{report['target']}", justify="right")
    for key, label, fmt in ROWS:
        grid.add_row(label, *[fmt.format(report[key]) if report.get(key) is not None else "—" for report in reports])
    grid.add_row("input", *[f"batch {r['batch']} x seq {r['seq_len']}, {r['threads']} threads" for r in reports])
    grid.add_row("bundle", *[f"{r.get('format')} {r.get('precision')}" for r in reports])
    grid.add_row("source", *[r["source"] for r in reports])
    grid.add_row("runtime", *[", ".join(f"{k} {v}" for k, v in r.get("runtime_versions", {}).items()
                                        if k not in ("python", "numpy")) for r in reports])
    if any("host_check" in report for report in reports):
        grid.add_row("host check", *[_host_check(report) for report in reports])
    return grid


def _host_check(report: dict) -> str:
    check = report.get("host_check")
    if not check:
        return "—"
    return (f"estimated {check['estimated_ms']:.2f} ms vs measured {check['measured_p50_ms']:.2f} ms "
            f"on {check['cpu']} ({check['error_pct']:+.0f}%)")


def show(reports: list[dict], console: Console | None = None) -> None:
    """Print the table."""
    (console or Console()).print(table(reports))


def write_json(reports: list[dict], path: str | Path) -> Path:
    """Write one report (or a list when comparing) atomically: a temp file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = reports[0] if len(reports) == 1 else reports
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(handle, "w") as stream:
        json.dump(payload, stream, indent=2)
    os.replace(temporary, path)
    return path


def compare_plot(reports: list[dict], path: str | Path) -> Path:
    """Bar chart of several bundles side by side: p50 latency with a p90 whisker, and model size."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise missing_extra("bench --compare (the PNG chart)", "bench") from None
    names = [f"{Path(r['bundle']).name}\n{r['target']}" for r in reports]
    p50 = [r["p50_ms"] for r in reports]
    whisker = [max(r["p90_ms"] - r["p50_ms"], 0.0) for r in reports]
    figure, (latency_axis, size_axis) = plt.subplots(1, 2, figsize=(4 + 1.6 * len(reports), 4.2))
    bars = latency_axis.bar(names, p50, yerr=[[0] * len(reports), whisker], capsize=4, color="#4c72b0")
    latency_axis.bar_label(bars, fmt="%.1f", label_type="center", color="white")
    latency_axis.set_ylabel("latency, ms (bar p50, whisker p90)")
    size_axis.bar(names, [r.get("model_bytes", 0) / 1e6 for r in reports], color="#55a868")
    size_axis.set_ylabel("model size, MB")
    for axis in (latency_axis, size_axis):
        axis.tick_params(axis="x", labelsize=8)
    sources = sorted({r["source"] for r in reports})
    figure.suptitle("edgeft bench — " + "; ".join(sources), fontsize=9)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.tmp.png")
    figure.savefig(temporary, dpi=120)
    plt.close(figure)
    os.replace(temporary, path)
    return path
