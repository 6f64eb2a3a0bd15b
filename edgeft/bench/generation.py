"""`edgeft bench` for causal-LM bundles: generation speed, measured in fresh processes of the light runtime.

Every bundle runs `python -m edgeft.runtime bench-generate` once per round, the bundles interleaved within each
round (round 1: A, B, C; round 2: A, B, C; ...), so a slow spell of a shared machine hits every row alike.
Per row: time to first token, prompt tokens/s and decode tokens/s at a stated prompt and output length, pooled
over the rounds with bootstrap intervals (`edgeft.bench.stats`), peak RSS, and every raw sample.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from edgeft.bench import stats
from edgeft.errors import EdgeftError

ROUNDS = 3
RUNS = 3
NEW_TOKENS = 64
KEYS = ("ttft_ms", "prompt_tokens_per_s", "decode_tokens_per_s")


def is_generation_bundle(bundle: str | Path) -> bool:
    """Whether a bundle folder holds a causal LM (its manifest has a `decoder` section)."""
    manifest = Path(bundle) / "manifest.json"
    try:
        return "decoder" in json.loads(manifest.read_text())
    except (OSError, ValueError):
        return False


def bench_generation(bundles: list[str | Path], threads: int | None = 2, prompt: str | None = None,
                     prompt_tokens: int | None = None, new_tokens: int = NEW_TOKENS, rounds: int = ROUNDS,
                     runs: int = RUNS, json_path: Path | None = None) -> list[dict]:
    """Time each bundle's generation in `rounds` interleaved fresh processes; one report per bundle.

    Raises:
        EdgeftError: a bundle whose timing process failed (its stderr is quoted).
    """
    raw: dict[str, list[dict]] = {str(bundle): [] for bundle in bundles}
    for _ in range(rounds):
        for bundle in bundles:
            raw[str(bundle)].append(_one_process(bundle, threads, prompt, prompt_tokens, new_tokens, runs))
    reports = [_pool(bundle, results) for bundle, results in raw.items()]
    if json_path:
        Path(json_path).write_text(json.dumps(reports, indent=2))
    return reports


def token_latency(bundles: list[str | Path], threads: int | None, prompt: str | None, new_tokens: int = NEW_TOKENS,
                  rounds: int = 1, runs: int = RUNS) -> dict[str, dict]:
    """Milliseconds per decoded token of each bundle, timed as `bench_generation` does (interleaved fresh
    processes): p50 and p90 over every generation's mean, the samples, peak RSS and model bytes; keyed by the
    bundle path as given. What a compression candidate's latency is for a generating model."""
    import numpy as np

    from edgeft.runtime.bench import model_bytes

    result = {}
    for report in bench_generation(bundles, threads=threads, prompt=prompt, new_tokens=new_tokens, rounds=rounds,
                                   runs=runs):
        samples = [1000.0 / sample["decode_tokens_per_s"] for entry in report["raw"] for sample in entry["samples"]]
        p50, p90 = np.percentile(samples, [50, 90])
        result[report["bundle"]] = {
            "p50_ms": float(p50), "p90_ms": float(p90), "samples_ms": samples, "peak_rss_mb": report["peak_rss_mb"],
            "model_bytes": model_bytes(Path(report["bundle"])),
            "source": f"measured:host (ms per decoded token, {report['prompt_tokens']}-token prompt, "
                      f"{new_tokens} new tokens, {rounds} round(s) of {runs} generations)"}
    return result


def render(reports: list[dict]) -> str:
    """A Markdown table: one row per bundle, medians with their 95% intervals."""
    lines = ["| bundle | prompt tokens | new tokens | TTFT ms | prompt tok/s | decode tok/s p50 [95% CI] | decode p90 "
             "| peak RSS MB |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for report in reports:
        decode = report["decode_tokens_per_s"]
        lines.append(
            f"| {report['bundle']} | {report['prompt_tokens']} | {report['new_tokens']} | "
            f"{report['ttft_ms']['p50']['value']:.1f} | {report['prompt_tokens_per_s']['p50']['value']:.0f} | "
            f"{decode['p50']['value']:.1f} [{decode['p50']['ci'][0]:.1f}, {decode['p50']['ci'][1]:.1f}] | "
            f"{decode['p90']['value']:.1f} | {report['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def _one_process(bundle, threads, prompt, prompt_tokens, new_tokens, runs) -> dict:
    command = [sys.executable, "-m", "edgeft.runtime", "bench-generate", str(bundle), "--new-tokens", str(new_tokens),
               "--runs", str(runs), "--json", "-"]
    for flag, value in (("--threads", threads), ("--prompt", prompt), ("--prompt-tokens", prompt_tokens)):
        if value is not None:
            command += [flag, str(value)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if done.returncode != 0:
        raise EdgeftError(f"{bundle}: the generation benchmark failed: {done.stderr.strip()[-2000:]}", 1)
    return json.loads(done.stdout)


def _pool(bundle: str, results: list[dict]) -> dict:
    first = results[0]
    pooled = {key: {"p50": stats.percentile_ci([[s[key] for s in r["samples"]] for r in results], 50),
                    "p90": stats.percentile_ci([[s[key] for s in r["samples"]] for r in results], 90)}
              for key in KEYS}
    return {"bundle": bundle, "format": first["format"], "precision": first["precision"],
            "prompt_tokens": first["prompt_tokens"], "new_tokens": first["new_tokens"], "threads": first["threads"],
            "rounds": len(results), "runs_per_round": first["runs"], **pooled,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results), "load_s": [r["load_s"] for r in results],
            "source": "measured:host", "raw": results}
