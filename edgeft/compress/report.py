"""What `edgeft compress` leaves for people: the Pareto plot and report.md (candidates.json is for machines)."""

from __future__ import annotations

from pathlib import Path

from edgeft.compress.candidate import Candidate

MB = 1e6


def plot_pareto(candidates: list[Candidate], front: list[Candidate], metric: str, budget_ms: float, path: Path,
                title: str) -> None:
    """Validation metric against p50 latency; the front joined and highlighted, the budget as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    on_front = {c.bundle for c in front}
    figure, axis = plt.subplots(figsize=(9, 6))
    for c in candidates:
        style = {"color": "tab:red"} if c.bundle in on_front else {"color": "tab:blue", "alpha": 0.5}
        axis.scatter(c.latency.p50_ms, c.validation[metric] * 100, s=40, **style)
        axis.annotate(c.name, (c.latency.p50_ms, c.validation[metric] * 100), fontsize=6, xytext=(3, 3),
                      textcoords="offset points")
    line = sorted(front, key=lambda c: c.latency.p50_ms)
    if line:
        axis.plot([c.latency.p50_ms for c in line], [c.validation[metric] * 100 for c in line], color="tab:red",
                  label="Pareto front")
    axis.axvline(budget_ms, color="tab:green", linestyle="--", label=f"latency budget {budget_ms:g} ms (p50)")
    axis.set_xscale("log")
    axis.set_xlabel("p50 latency, batch 1 (ms, log scale)")
    axis.set_ylabel(f"validation {metric} (%)")
    axis.set_title(title)
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)


def _row(c: Candidate, metric: str, best: str | None, front: set) -> str:
    test = f"{c.test[metric]:.2%}" if c.test else ""
    rss = f"{c.peak_rss_mb:.0f}" if c.peak_rss_mb else "—"
    mark = " **best**" if c.name == best else ""
    return (f"| {c.name}{mark} | {' → '.join(c.chain)} | {c.validation[metric]:.2%} | {test} | "
            f"{c.latency.p50_ms:.2f} | {c.latency.p90_ms:.2f} | {c.model_bytes / MB:.1f} | {rss} | "
            f"{'yes' if c.bundle in front else ''} |")


def write_report(path: Path, summary: dict, candidates: list[Candidate], front: list[Candidate]) -> None:
    """report.md: the choice and why, the search, every candidate, what each pass bought."""
    metric, best = summary["metric"], summary["best"]
    trials = summary["trials"]
    reference = summary["reference"]
    ref_test = f", test {reference['test']:.2%}" if reference.get("test") is not None else ""
    on_front = {c.bundle for c in front}
    ordered = sorted(candidates, key=lambda c: (c.bundle not in on_front, c.latency.p50_ms))
    lines = [
        f"# Compression report: {summary['run']} for `{summary['target']}`", "",
        f"Search: {trials['finished']} trials in {summary.get('searched_seconds', summary['seconds']) / 60:.1f} min "
        f"over every run of the study (this run {summary['seconds'] / 60:.1f} min; {trials['complete']} measured, "
        f"{trials['pruned']} stopped before the costly pass, {trials['failed']} failed; "
        f"{trials.get('ended', 'trial count or time budget reached')}); chain "
        f"`{' → '.join(summary['config']['passes'])}`. Chosen on validation; test evaluated once, for the front.", "",
        f"Tuned model (PyTorch): validation {metric} {reference['validation']:.2%}{ref_test}. Latency: "
        f"{summary['latency_source']}, batch 1, {summary['bench_texts']} real validation texts cycled.", "",
        *_remeasured_line(summary.get("remeasured")),
        f"**Best:** `{best}` — {summary['reason']}." if best else f"**No best candidate:** {summary['reason']}.", "",
        "![pareto](pareto.png)", "",
        f"| candidate | chain | validation {metric} | test {metric} | p50 ms | p90 ms | MB | peak RSS MiB | front |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *[_row(c, metric, best, on_front) for c in ordered], "",
        "## What each pass bought", "",
        f"Each front candidate against the tuned model in the same format and precision (validation {metric}).", "",
        f"| candidate | chain | Δ {metric} (pt) | speed-up | size |", "| --- | --- | --- | --- | --- |",
        *[f"| {e['candidate']} | {' → '.join(e['chain'])} | {e['metric_delta'] * 100:+.2f} | {e['speedup']:.2f}× | "
          f"{e['size_ratio']:.0%} |" for e in summary["passes"]], "",
        "## Why trials stopped early", "",
        *[f"- {count}× {reason}" for reason, count in trials["stopped"].items()], "",
    ]
    path.write_text("\n".join(lines))


def _remeasured_line(remeasured: dict | None) -> list[str]:
    if not remeasured:
        return []
    aa = remeasured["aa"]
    noise = (f"; A/A ratio {aa['value']:.2f} [{aa['ci'][0]:.2f}, {aa['ci'][1]:.2f}] (the noise floor)"
             if aa.get("value") is not None else "")
    return [f"The {len(remeasured['candidates'])} finalists (within the drop, or on the front) were timed again "
            f"together before the choice: {remeasured['rounds']} interleaved rounds, a fresh process each{noise}.", ""]
