"""Generation speed of a causal-LM bundle in this process, the light runtime only: `python -m edgeft.runtime
bench-generate BUNDLE --json -`.

Like llama.cpp's llama-bench: a prompt of a stated length is prefilled, then a fixed number of tokens is decoded
greedily (eos ignored), several times. Reported per run: time to first token (prefill + the first pick), prompt
tokens/s (prompt length / time to first token) and decode tokens/s (tokens after the first / their wall time);
across runs p50/p90 with every raw sample, plus load time and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from edgeft.runtime.bench import peak_rss_mb


def prompt_ids(generator, prompt: str | None, prompt_tokens: int | None) -> list[int]:
    """The prompt's ids in the bundle's format; with `prompt_tokens`, cut or repeated to exactly that length."""
    reference = generator.manifest["decoder"].get("self_check", {}).get("ids") or generator.encode("a sample prompt")
    ids = generator.encode(prompt) if prompt else list(reference)
    if prompt_tokens:
        ids = (ids * (prompt_tokens // len(ids) + 1))[:prompt_tokens]
    return ids


def measure(bundle: str | Path, prompt: str | None = None, prompt_tokens: int | None = None,
            new_tokens: int = 64, runs: int = 5, warmup: int = 1, threads: int | None = None) -> dict:
    """Time `runs` generations of `new_tokens` after one prompt; see the module docstring for what is reported."""
    from edgeft.runtime.generate import load_generator

    started = time.perf_counter()
    generator = load_generator(bundle, threads=threads)
    load_s = time.perf_counter() - started
    ids = prompt_ids(generator, prompt, prompt_tokens)
    samples = []
    for index in range(warmup + runs):
        begin = time.perf_counter()
        stamps = [time.perf_counter() for _ in generator.token_stream(ids, new_tokens, ignore_eos=True)]
        if index < warmup:
            continue
        ttft = stamps[0] - begin
        decode = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else float("nan")
        samples.append({"ttft_ms": 1000 * ttft, "prompt_tokens_per_s": len(ids) / ttft,
                        "decode_tokens_per_s": decode, "new_tokens": len(stamps)})
    summary = {key: _spread([sample[key] for sample in samples])
               for key in ("ttft_ms", "prompt_tokens_per_s", "decode_tokens_per_s")}
    return {
        "bundle": str(bundle), "format": generator.manifest["format"], "precision": generator.manifest["precision"],
        "prompt_tokens": len(ids), "new_tokens": new_tokens, "threads": threads, "runs": runs,
        "load_s": round(load_s, 3), "peak_rss_mb": round(peak_rss_mb(), 1), **summary, "samples": samples,
        "machine": platform.machine(), "runtime": generator.runtime_versions,
    }


def _spread(values: list[float]) -> dict:
    p50, p90 = np.percentile(values, [50, 90])
    return {"p50": float(p50), "p90": float(p90), "mean": float(np.mean(values))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeft.runtime bench-generate", description=__doc__.split("\n")[0])
    parser.add_argument("bundle")
    parser.add_argument("--prompt", default=None, help="a real prompt (default: the bundle's reference sequence)")
    parser.add_argument("--prompt-tokens", type=int, default=None, help="cut or repeat the prompt to this length")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default="-", help="where to write the result (- for stdout)")
    args = parser.parse_args(argv)
    result = measure(args.bundle, args.prompt, args.prompt_tokens, args.new_tokens, args.runs, args.warmup,
                     args.threads)
    text = json.dumps(result, indent=2)
    if args.json == "-":
        print(text)
    else:
        Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
