"""What `edgeft compress` leaves for people: the Pareto plot and report.md (candidates.json is for machines)."""

from __future__ import annotations

from pathlib import Path

from edgeft.compress.candidate import Candidate
from edgeft.compress.select import format_metric

MB = 1e6


def plot_pareto(candidates: list[Candidate], front: list[Candidate], summary: dict, path: Path,
                title: str) -> None:
    """Validation metric against p50 latency (per call, or per decoded token for a generating model); the front
    joined and highlighted, the per-call budget as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric, scale = summary["metric"], summary.get("metric_scale", 1.0)
    unit = summary.get("latency_unit", "ms per call, batch 1")

    def point(c: Candidate) -> tuple[float, float]:
        return c.latency.p50_ms, c.validation[metric] * 100 / scale

    on_front = {c.bundle for c in front}
    figure, axis = plt.subplots(figsize=(9, 6))
    for c in candidates:
        style = {"color": "tab:red"} if c.bundle in on_front else {"color": "tab:blue", "alpha": 0.5}
        axis.scatter(*point(c), s=40, **style)
        axis.annotate(c.name, point(c), fontsize=6, xytext=(3, 3), textcoords="offset points")
    line = [point(c) for c in sorted(front, key=lambda c: c.latency.p50_ms)]
    if line:
        axis.plot(*zip(*line), color="tab:red", label="Pareto front")
    if "per call" in unit:
        budget = summary["budget_ms"]
        axis.axvline(budget, color="tab:green", linestyle="--", label=f"latency budget {budget:g} ms (p50)")
    axis.set_xscale("log")
    axis.set_xlabel(f"p50 latency ({unit}, log scale)")
    axis.set_ylabel(f"validation {metric}" + (" (%)" if scale == 1.0 else ""))
    axis.set_title(title)
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)


def _row(c: Candidate, metric: str, best: str | None, front: set, scale: float) -> str:
    test = format_metric(c.test[metric], scale) if c.test else ""
    rss = f"{c.peak_rss_mb:.0f}" if c.peak_rss_mb else "—"
    mark = " **best**" if c.name == best else ""
    return (f"| {c.name}{mark} | {' → '.join(c.chain)} | {format_metric(c.validation[metric], scale)} | {test} | "
            f"{c.latency.p50_ms:.2f} | {c.latency.p90_ms:.2f} | {c.model_bytes / MB:.1f} | {rss} | "
            f"{'yes' if c.bundle in front else ''} |")


def write_report(path: Path, summary: dict, candidates: list[Candidate], front: list[Candidate]) -> None:
    """report.md: the choice and why, the search, every candidate, what each pass bought."""
    metric, best = summary["metric"], summary["best"]
    scale, unit = summary.get("metric_scale", 1.0), summary.get("latency_unit", "ms per call, batch 1")
    trials = summary["trials"]
    reference = summary["reference"]
    ref_test = f", test {format_metric(reference['test'], scale)}" if reference.get("test") is not None else ""
    on_front = {c.bundle for c in front}
    ordered = sorted(candidates, key=lambda c: (c.bundle not in on_front, c.latency.p50_ms))
    lines = [
        f"# Compression report: {summary['run']} for `{summary['target']}`", "",
        f"Search: {trials['finished']} trials in {summary.get('searched_seconds', summary['seconds']) / 60:.1f} min "
        f"over every run of the study (this run {summary['seconds'] / 60:.1f} min; {trials['complete']} measured, "
        f"{trials['pruned']} stopped before the costly pass, {trials['failed']} failed; "
        f"{trials.get('ended', 'trial count or time budget reached')}); chain "
        f"`{' → '.join(summary['config']['passes'])}`. Chosen on validation; test evaluated once, for the front.", "",
        f"Tuned model (PyTorch): validation {metric} {format_metric(reference['validation'], scale)}{ref_test}. "
        f"Latency ({unit}): {summary['latency_source']}, real validation inputs.", "",
        *_remeasured_line(summary.get("remeasured")),
        f"**Best:** `{best}` — {summary['reason']}." if best else f"**No best candidate:** {summary['reason']}.", "",
        "![pareto](pareto.png)", "",
        f"| candidate | chain | validation {metric} | test {metric} | p50 {unit} | p90 | MB | peak RSS MiB | front |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *[_row(c, metric, best, on_front, scale) for c in ordered], "",
    ]
    if summary["passes"]:  # none when no front candidate has a pass before its export (a decoder's search)
        lines += [
            "## What each pass bought", "",
            f"Each front candidate against the tuned model in the same format and precision (validation {metric}).",
            "", f"| candidate | chain | Δ {metric} (pt) | speed-up | size |", "| --- | --- | --- | --- | --- |",
            *[f"| {e['candidate']} | {' → '.join(e['chain'])} | {e['metric_delta'] * 100 / scale:+.2f} | "
              f"{e['speedup']:.2f}× | {e['size_ratio']:.0%} |" for e in summary["passes"]], "",
        ]
    if trials["stopped"]:
        lines += ["## Why trials stopped early", "",
                  *[f"- {count}× {reason}" for reason, count in trials["stopped"].items()], ""]
    path.write_text("\n".join(lines))


def _remeasured_line(remeasured: dict | None) -> list[str]:
    if not remeasured:
        return []
    aa = remeasured["aa"]
    noise = (f"; A/A ratio {aa['value']:.2f} [{aa['ci'][0]:.2f}, {aa['ci'][1]:.2f}] (the noise floor)"
             if aa.get("value") is not None else "")
    return [f"The {len(remeasured['candidates'])} finalists (within the drop, or on the front) were timed again "
            f"together before the choice: {remeasured['rounds']} interleaved rounds, a fresh process each{noise}.", ""]
