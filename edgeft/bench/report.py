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
        if report_key_ci := {"p50_ms": "p50_ci_ms", "p90_ms": "p90_ci_ms"}.get(key):
            grid.add_row(f"{label} 95% CI", *[_interval(r.get(report_key_ci), " ms") for r in reports])
    if len(reports) > 1 and reports[0].get("ratio_vs"):
        first = Path(reports[0]["bundle"]).name
        grid.add_row(f"speed-up vs {first}",
                     *[_ratio(next(iter(r.get("ratio_vs", {}).values()), None)) for r in reports])
    grid.add_row("input", *[f"batch {r['batch']} x seq {r['seq_len']}, {r['threads']} threads" for r in reports])
    grid.add_row("token lengths", *[_lengths(r) for r in reports])
    grid.add_row("ran at length", *[_padded(r.get("padded_lengths") or []) for r in reports])
    grid.add_row("sample", *[_sample(r) for r in reports])
    grid.add_row("bundle", *[f"{r.get('format')} {r.get('precision')}" for r in reports])
    grid.add_row("source", *[r["source"] for r in reports])
    grid.add_row("runtime", *[", ".join(f"{k} {v}" for k, v in r.get("runtime_versions", {}).items()
                                        if k not in ("python", "numpy")) for r in reports])
    if any("host_check" in report for report in reports):
        grid.add_row("host check", *[_host_check(report) for report in reports])
    if reports and reports[0].get("aa"):
        aa = reports[0]["aa"]
        grid.caption = (f"A/A check ({aa['row']} timed twice, interleaved): ratio {_ratio(aa)}; an interval this "
                        "wide around 1.0 is the noise floor of this run")
    return grid


def _interval(ci, unit: str = "") -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]{unit}" if ci else "—"


def _ratio(ratio: dict | None) -> str:
    return f"{ratio['value']:.2f}x {_interval(ratio['ci'])}" if ratio else "—"


def _lengths(report: dict) -> str:
    lengths = (report.get("inputs") or {}).get("token_lengths")
    if not lengths:
        return "—"
    return (f"{lengths['n']} texts: median {lengths['median']:.0f}, p90 {lengths['p90']:.0f}, "
            f"{lengths['min']:.0f}-{lengths['max']:.0f}")


def _padded(lengths: list[int]) -> str:
    """The lengths the backend ran: a few fixed buckets (TFLite), or a range (padded to each batch's longest)."""
    if len(lengths) > 4:
        return f"{lengths[0]}-{lengths[-1]} (each batch's longest)"
    return ", ".join(map(str, lengths)) or "—"


def _sample(report: dict) -> str:
    if not report.get("protocol"):
        return "—"
    machine = report.get("machine", {})
    load = machine.get("loadavg_before") or [None]
    steal = machine.get("steal_pct")
    return (f"{report['rounds']} rounds x {report['protocol']['seconds_per_process']:g} s, {report['runs']} calls"
            + (f"; load {load[0]:.2f}" if load[0] is not None else "")
            + (f", steal {steal:.1f}%" if steal is not None else ""))


def _host_check(report: dict) -> str:
    check = report.get("host_check")
    if not check:
        return "—"
    return (f"estimated {check['estimated_ms']:.2f} ms vs measured {check['measured_p50_ms']:.2f} ms "
            f"on {check['cpu']} ({check['error_pct']:+.0f}%)")


def show(reports: list[dict], console: Console | None = None) -> None:
    """Print the table."""
    (console or Console()).print(table(reports))


def show_emulated(result: dict, console: Console | None = None) -> None:
    """Print the outcome of `edgeft bench --emulate`."""
    console = console or Console()
    verdict = "[green]equal[/]" if result["equal"] else "[red]DIFFERENT[/]"
    console.print(f"{result['bundle']}: {result['arch']} ({result['emulator']}, {result['root']}): predictions on "
                  f"{result['texts']} reference texts {verdict} to this host's "
                  f"(max abs logit diff {result['max_abs_diff']:.2g}, top-1 agreement {result['top1_agreement']:.2%})")
    if result["equal"]:
        console.print(f"runs on {result['arch']} (verified under emulation)")
    console.print(f"[yellow]{result['note']}[/]")


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
