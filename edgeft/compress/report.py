"""What `edgeft compress` leaves for people: the Pareto plot and report.md (candidates.json is for machines)."""

from __future__ import annotations

from pathlib import Path

from edgeft.compress.select import measured

MB = 1e6


def plot_pareto(candidates: list[dict], budget_ms: float, path: Path, title: str) -> None:
    """Accuracy against p50 latency; the front joined and highlighted, references marked, budget as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [c for c in candidates if measured(c)]
    figure, axis = plt.subplots(figsize=(9, 6))
    for row in rows:
        style = {"marker": "s", "color": "tab:gray"} if row.get("reference") else (
            {"marker": "o", "color": "tab:red"} if row["pareto"] else {"marker": "o", "color": "tab:blue", "alpha": 0.5})
        axis.scatter(row["p50_ms"], row["accuracy"] * 100, s=40, **style)
        axis.annotate(row["name"], (row["p50_ms"], row["accuracy"] * 100), fontsize=6, xytext=(3, 3),
                      textcoords="offset points")
    front = sorted((r for r in rows if r["pareto"]), key=lambda r: r["p50_ms"])
    if front:
        axis.plot([r["p50_ms"] for r in front], [r["accuracy"] * 100 for r in front], color="tab:red",
                  label="Pareto front")
    axis.axvline(budget_ms, color="tab:green", linestyle="--", label=f"latency budget {budget_ms:g} ms")
    axis.set_xscale("log")
    axis.set_xlabel("p50 latency, batch 1 (ms, log scale)")
    axis.set_ylabel("test accuracy (%)")
    axis.set_title(title)
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)


def _row(c: dict, best_name: str | None) -> str:
    if not measured(c):
        return f"| {c['name']} | {' → '.join(c['chain']) or '—'} | failed: {c.get('error', '')[:120]} |||||||||"
    rss = f"{c['peak_rss_mb']:.0f}" if c.get("peak_rss_mb") else "—"
    mark = " **best**" if c["name"] == best_name else (" (reference)" if c.get("reference") else "")
    return (f"| {c['name']}{mark} | {' → '.join(c['chain']) or '—'} | {c['format']} {c['precision']} | "
            f"{c['accuracy']:.2%} | {c['macro_f1']:.4f} | {c['accuracy_drop'] * 100:+.2f} | {c['p50_ms']:.2f} | "
            f"{c['p90_ms']:.2f} | {(c['model_bytes'] or 0) / MB:.1f} | {rss} | {'yes' if c['pareto'] else ''} |")


def write_report(path: Path, summary: dict, candidates: list[dict]) -> None:
    """report.md: the choice and why, every candidate, what each pass cost and bought, and the goals."""
    best = summary.get("best")
    lines = [
        f"# Compression report: {summary['run']} for `{summary['target']}`", "",
        f"Latency: {summary['latency_source']}; {summary['threads']} threads, batch {summary['batch']}, "
        f"{summary['bench_texts']} real test texts cycled. Accuracy: each candidate run in its own runtime on "
        f"{summary['eval_rows']} test rows.", "",
        f"**Best:** `{best}` — {summary['reason']}." if best else f"**No best candidate:** {summary['reason']}.", "",
        "![pareto](pareto.png)", "",
        "| candidate | chain | format | accuracy | macro-F1 | Δ acc (pt) | p50 ms | p90 ms | MB | peak RSS MiB | Pareto |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *[_row(c, best) for c in candidates], "",
        "## What each pass cost and bought", "",
        "Each model against the tuned one, same format and precision.", "",
        "| model | format | Δ accuracy (pt) | speed-up | size |", "| --- | --- | --- | --- | --- |",
        *[f"| {p['model']} | {p['format']} {p['precision']} | {p['accuracy_delta'] * 100:+.2f} | "
          f"{p['speedup']:.2f}× | {p['size_ratio']:.0%} |" for p in summary["passes"]], "",
    ]
    if summary["int8_slower"]:
        lines += ["## int8 slower than fp32 here", "",
                  *[f"- {item}: the pick avoids it" for item in summary["int8_slower"]], ""]
    goals = summary.get("goals")
    if not goals and summary["target"] != "host":
        lines += ["The PyTorch reference row was measured on this host, not on the target; speed-ups against it",
                  "are stated only for `--target host` runs.", ""]
    if goals:
        lines += ["## Goals (issue 5)", "", f"Candidate: `{goals['candidate']}` (fastest within 1 point).", "",
                  *[f"- {name}: {value['measured']} (goal {value['goal']}): **{'met' if value['met'] else 'not met'}**"
                    for name, value in goals["checks"].items()], ""]
    path.write_text("\n".join(lines))
