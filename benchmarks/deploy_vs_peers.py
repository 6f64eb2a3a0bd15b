"""edgeft against the tools users would pick instead, on one tuned model, every row under the same bench protocol.

Usage:
    python -m benchmarks.deploy_vs_peers [--run runs/banking77-minilm-lora] [--edgeft NAME=BUNDLE ...]
                                         [--compress RUN/compress/host] [--rounds 5] [--seconds 1] [--threads 2]
    python -m benchmarks.deploy_vs_peers --quick      # tiny model, short samples: a smoke test of the whole path

Rows: `pytorch-fp32` (eager), `pytorch-dynamic-int8` (torch.ao), `optimum-ort-dynamic-int8` (optimum-onnx export +
ORTOptimizer + ORTQuantizer with this CPU's preset), `optimum-intel-openvino-int8` (optimum-intel + NNCF),
`litert-dynamic-int8` (litert-torch + ai-edge-quantizer) and `edgeft:<candidate>` for the bundles given (or the
`best` and Pareto rows of an `edgeft compress` output). Accuracy and macro-F1: each row in its own runtime, one text
per call (the batch-1 signature that is timed), on the run's test split. Latency: `edgeft.bench.compare` at batch 1
and 8 (interleaved rounds of fresh processes on the same real test texts, bootstrap intervals, an A/A row), speed-ups
against pytorch-fp32 and optimum-ort-dynamic-int8 from the paired rounds. Writes
`benchmarks/results/deploy_vs_peers_<name>.json` (raw latencies included) and the table in benchmarks/README.md.
Every peer here installs beside edgeft's pins (optimum-intel 1.27 resolves with them; 2.x does not, see
../shared/STACK.md); a peer that cannot be imported here is built and run in a venv this script creates.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
README = REPO / "benchmarks" / "README.md"
PYTORCH, ORT = "pytorch-fp32", "optimum-ort-dynamic-int8"
# name -> (builder in benchmarks.peers or None, factory, modules it needs, pip requirement for its own venv)
PEERS = {
    PYTORCH: (None, "edgeft.bench.eager:load", ["torch"], None),
    "pytorch-dynamic-int8": (None, "benchmarks.peers:pytorch_dynamic_int8", ["torch"], None),
    ORT: ("build_optimum_ort", "benchmarks.peers:optimum_ort", ["optimum.onnxruntime"], "optimum-onnx==0.1.0"),
    "optimum-intel-openvino-int8": ("build_optimum_openvino", "benchmarks.peers:optimum_openvino",
                                    ["optimum.intel"], "optimum-intel==1.27.0"),
    "litert-dynamic-int8": ("build_litert", "benchmarks.peers:litert_dynamic_int8", ["litert_torch"],
                            "litert-torch==0.10.0"),
}
BAR = {PYTORCH: 8.0, ORT: 2.0}
ACCURACY_WINDOW = 0.01
CALIBRATION_TEXTS = 300


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("runs/banking77-minilm-lora"), help="a tuned run folder")
    parser.add_argument("--edgeft", action="append", default=[], metavar="NAME=BUNDLE", help="an edgeft row")
    parser.add_argument("--compress", type=Path, help="an `edgeft compress` output: its best and Pareto rows")
    parser.add_argument("--name", default="banking77", help="results file: deploy_vs_peers_<name>.json")
    parser.add_argument("--work", type=Path, help="where peer artifacts are built (default RUN/deploy_vs_peers)")
    parser.add_argument("--lock", type=Path, help="hold this file's lock (flock) while timing, not while building")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--eval-rows", type=int, help="test rows to score (default: all)")
    parser.add_argument("--score-threads", type=int, default=1,
                        help="threads while scoring accuracy (predictions do not depend on it; on a shared machine "
                             "2-thread PyTorch calls stall on descheduled workers)")
    parser.add_argument("--quick", action="store_true", help="tiny model, 2 short rounds: a smoke test")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.quick:
        args.work = args.work or REPO / "runs" / "deploy_vs_peers_quick"
        args.run, args.edgeft = quick_setup(args.work)
        args.rounds, args.seconds, args.name = min(args.rounds, 2), min(args.seconds, 0.1), "quick"
    work = args.work or args.run / "deploy_vs_peers"
    edgeft_rows = edgeft_bundles(args.edgeft, args.compress)
    if not edgeft_rows:
        parser.error("no edgeft rows: pass --edgeft NAME=BUNDLE or --compress DIR")
    examples, labels, calibration = test_examples(args.run, args.eval_rows)
    model_dir = args.run / "merged"
    rows, notes = build_peers(model_dir, work / "peers", args.threads, calibration)
    rows += [_row(f"edgeft:{name}", str(bundle), None) for name, bundle in edgeft_rows]
    quality = {row["name"]: score(row, examples, labels, args.score_threads, work) for row in rows}
    reference = json.loads((Path(edgeft_rows[0][1]) / "manifest.json").read_text())
    texts = reference["reference_sample"]["texts"]
    timings = {}
    with _locked(args.lock):
        for batch in [int(value) for value in args.batches.split(",")]:
            timings[batch] = time_rows(rows, batch, texts, args)
    result = assemble(rows, quality, timings, notes, args, time.perf_counter() - started)
    output = RESULTS / f"deploy_vs_peers_{args.name}.json" if not args.quick else work / "deploy_vs_peers.json"
    _write_json(result, output)
    table = markdown(result)
    print(table)
    print(verdict(result))
    if not args.quick:
        update_readme(table, verdict(result), result["command"])
    print(f"wrote {output}")
    return 0


def quick_setup(work: Path) -> tuple[Path, list[str]]:
    """A tiny-bert tuned on the quickstart data, and its edgeft ONNX int8 bundle (TFLite export has its own tests;
    the LiteRT peer still runs)."""
    from edgeft.export import export

    run = work / "run"
    if not (run / "metrics.json").is_file():
        subprocess.run([sys.executable, "-m", "edgeft", "tune", str(REPO / "recipes" / "quickstart.yaml"),
                        "--set", "model.name=tiny-bert", "--set", "training.epochs=2", "--output", str(run),
                        "--overwrite"], check=True, cwd=REPO)
    bundles = []
    for format in ("onnx",):
        bundle = run / "bundles" / f"{format}-int8"
        if not (bundle / "manifest.json").is_file():
            export(run, format, "int8", bundle, min_agreement=0.0, progress=False)
        bundles.append(f"{format}-int8={bundle}")
    return run, bundles


def edgeft_bundles(pairs: list[str], compress: Path | None) -> list[tuple[str, Path]]:
    rows = []
    for pair in pairs:
        name, _, bundle = pair.partition("=")
        rows.append((name, Path(bundle).resolve()))
    if compress:
        candidates = json.loads((compress / "candidates.json").read_text())
        best = candidates["summary"].get("best")
        for row in candidates["candidates"]:
            if row.get("reference") or row.get("error") or not (row["name"] == best or row.get("pareto")):
                continue
            bundle = compress / "bundles" / row["name"] if not (compress / row["name"]).is_dir() else \
                compress / row["name"]
            rows.append(((f"best={row['name']}" if row["name"] == best else row["name"]),
                         Path(row.get("bundle") or bundle).resolve()))
    return rows


def test_examples(run: Path, limit: int | None) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """The run's test split (text, label), its labels, and training texts for calibration."""
    from edgeft.data import load_splits
    from edgeft.export.source import read_lock

    recipe = read_lock(run / "recipe.lock.yaml")
    splits = load_splits(recipe.data, seed=recipe.training.seed)
    test = splits.test
    examples = [(text, splits.labels[label]) for text, label in zip(test["text"], test["label"])]
    calibration = list(splits.train.shuffle(seed=1)["text"][:CALIBRATION_TEXTS])
    return examples[:limit] if limit else examples, splits.labels, calibration


def build_peers(model_dir: Path, out: Path, threads: int, calibration: list[str]) -> tuple[list[dict], dict]:
    """Each peer's artifact (built once; a `build.json` marks it done) and its row."""
    import importlib.util

    from benchmarks import peers

    rows, notes = [], {}
    for name, (builder, factory, modules, requirement) in PEERS.items():
        python = None
        if not all(importlib.util.find_spec(module.split(".")[0]) and _importable(module) for module in modules):
            python = peer_venv(name, requirement, out.parent / "venvs")
            notes[name] = f"ran in its own venv ({python}) with {requirement}: it does not install beside edgeft"
        if builder is None:
            rows.append(_row(name, str(model_dir), factory, python))
            continue
        target = out / name
        marker = target / "build.json"
        if not marker.is_file():
            target.mkdir(parents=True, exist_ok=True)
            print(f"building {name} ...", flush=True)
            began = time.perf_counter()
            if python:
                code = (f"import json, sys; from pathlib import Path; from benchmarks import peers; "
                        f"print(json.dumps(peers.{builder}(Path(sys.argv[1]), Path(sys.argv[2]))))")
                done = subprocess.run([python, "-c", code, str(model_dir), str(target)], check=True,
                                      capture_output=True, text=True, env=_env()).stdout.strip().splitlines()[-1]
                info = json.loads(done)
            else:
                extra = {"calibration": calibration} if name == "optimum-intel-openvino-int8" else {}
                info = getattr(peers, builder)(model_dir, target, threads, **extra)
            marker.write_text(json.dumps({**info, "build_seconds": time.perf_counter() - began}, indent=2))
        notes.setdefault(name, json.loads(marker.read_text())["recipe"])
        rows.append(_row(name, str(target), factory, python))
    return rows, notes


def _importable(module: str) -> bool:
    import importlib

    try:
        importlib.import_module(module)
        return True
    except Exception:  # an installed but broken peer is as good as absent here
        return False


def peer_venv(name: str, requirement: str | None, root: Path) -> str:
    """A venv with edgeft's runtime needs and the peer's own pin (for peers that conflict with edgeft's)."""
    venv = root / re.sub(r"[^a-z0-9]+", "-", name)
    python = venv / "bin" / "python"
    if not (venv / ".installed").is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "numpy", "tokenizers", "safetensors",
                        "onnxruntime", *([requirement] if requirement else [])], check=True)
        (venv / ".installed").touch()
    return str(python)


def _row(name: str, target: str, factory: str | None, python: str | None = None) -> dict:
    return {"name": name, "target": target, "factory": factory, "python": python}


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def score(row: dict, examples: list[tuple[str, str]], labels: list[str], threads: int, work: Path) -> dict:
    """Accuracy and macro-F1 of one row in its own runtime (a fresh process), one text per call."""
    import hashlib

    from edgeft.metrics import classification_metrics

    # Scores are kept per row, keyed by the row, its files' times and the texts: a rerun for timing reuses them.
    files = sorted((path.name, path.stat().st_mtime_ns) for path in Path(row["target"]).iterdir() if path.is_file())
    key = hashlib.sha256(json.dumps([row, files, examples]).encode()).hexdigest()
    cache = work / "scores" / f"{re.sub(r'[^A-Za-z0-9]+', '-', row['name'])}.json"
    if cache.is_file() and json.loads(cache.read_text()).get("key") == key:
        return json.loads(cache.read_text())["scores"]
    print(f"scoring {row['name']} on {len(examples)} test texts ...", flush=True)
    with tempfile.TemporaryDirectory(dir=work) as scratch:
        texts_file = Path(scratch) / "texts.json"
        texts_file.write_text(json.dumps([text for text, _ in examples]))
        command = [row["python"] or sys.executable, "-m", "benchmarks.peers", "predict", row["target"],
                   str(texts_file), "--threads", str(threads), *(["--factory", row["factory"]] if row["factory"]
                                                                 else [])]
        done = subprocess.run(command, capture_output=True, text=True, env=_env(), cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"scoring {row['name']} failed:\n{done.stderr[-2000:]}")
    predicted = json.loads(done.stdout.strip().splitlines()[-1])["predictions"]
    index = {label: i for i, label in enumerate(labels)}
    metrics = classification_metrics([index[label] for _, label in examples],
                                     [index.get(label, -1) for label in predicted], labels)
    scores = {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "eval_rows": metrics["rows"]}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"key": key, "scores": scores}))
    return scores


def time_rows(rows: list[dict], batch: int, texts: list[str], args) -> dict:
    """All rows under the protocol at one batch size; the first edgeft row also runs as the A/A row."""
    from edgeft.bench import Row, compare

    ordered = [row for row in rows if row["name"].startswith("edgeft:")] + \
              [row for row in rows if not row["name"].startswith("edgeft:")]
    bench_rows = [Row(row["name"], row["target"], row["factory"], row["python"]) for row in ordered]
    print(f"timing {len(bench_rows)} rows + A/A at batch {batch}: {args.rounds} rounds x {args.seconds:g} s ...",
          flush=True)
    return compare(bench_rows, rounds=args.rounds, seconds=args.seconds, batch=batch, threads=args.threads,
                   texts=texts, aa=True, baselines=[PYTORCH, ORT], seed=batch)


def assemble(rows: list[dict], quality: dict, timings: dict, notes: dict, args, seconds: float) -> dict:
    table = []
    for batch, result in timings.items():
        for summary in result["rows"]:
            base_name = summary["name"].removesuffix(" (A/A)")
            ratios = summary.get("ratio_vs", {})
            table.append({
                "name": summary["name"], "batch": batch, **quality[base_name],
                "p50_ms": summary["p50_ms"], "p90_ms": summary["p90_ms"], "p50_ci_ms": summary["p50_ci_ms"],
                "p90_ci_ms": summary["p90_ci_ms"], "throughput_per_s": summary["throughput_per_s"],
                "peak_rss_mb": summary["peak_rss_mb"], "bytes": summary["model_bytes"],
                "ratio_vs_pytorch_fp32": _ratio(ratios.get(PYTORCH)),
                "ratio_vs_optimum_ort_int8": _ratio(ratios.get(ORT)),
                "padded_lengths": summary["padded_lengths"], "runtime_versions": summary["runtime_versions"],
                "how": notes.get(base_name, "edgeft bundle " + next(r["target"] for r in rows
                                                                     if r["name"] == base_name)),
            })
    first = next(iter(timings.values()))
    return {
        "machine": first["machine"],
        "command": shlex.join(["python", "-m", "benchmarks.deploy_vs_peers", *sys.argv[1:]]),
        "seconds": round(seconds),
        "protocol": first["protocol"] | {"batches": list(timings)},
        "inputs": first["inputs"],
        "aa": {batch: result["aa"] for batch, result in timings.items()},
        "rows": table,
        "raw": {batch: {summary["name"]: summary["rounds"] for summary in result["rows"]}
                for batch, result in timings.items()},
        "machine_by_batch": {batch: result["machine"] for batch, result in timings.items()},
    }


def _ratio(ratio: dict | None) -> dict | None:
    return {"value": ratio["value"], "ci": ratio["ci"], "per_round": ratio["per_round"]} if ratio else None


def markdown(result: dict) -> str:
    head = ("| row | batch | test acc. | macro-F1 | p50 ms [95% CI] | p90 ms [95% CI] | items/s | peak RSS MiB | "
            "MB | vs pytorch-fp32 [CI] | vs optimum-ort-int8 [CI] |\n" + "|---" * 11 + "|\n")
    lines = []
    for row in result["rows"]:
        lines.append(
            f"| {row['name']} | {row['batch']} | {row['accuracy']:.2%} | {row['macro_f1']:.4f} | "
            f"{row['p50_ms']:.2f} [{row['p50_ci_ms'][0]:.2f}, {row['p50_ci_ms'][1]:.2f}] | "
            f"{row['p90_ms']:.2f} [{row['p90_ci_ms'][0]:.2f}, {row['p90_ci_ms'][1]:.2f}] | "
            f"{row['throughput_per_s']:.0f} | {row['peak_rss_mb']:.0f} | "
            f"{(row['bytes'] or 0) / 1e6:.1f} | {_cell(row['ratio_vs_pytorch_fp32'])} | "
            f"{_cell(row['ratio_vs_optimum_ort_int8'])} |")
    aa = "; ".join(f"batch {batch}: {value['row']} vs itself {value['value']:.2f}x "
                   f"[{value['ci'][0]:.2f}, {value['ci'][1]:.2f}]" for batch, value in result["aa"].items())
    return head + "\n".join(lines) + f"\n\nA/A (noise floor of this run): {aa}."


def _cell(ratio: dict | None) -> str:
    return f"{ratio['value']:.2f}x [{ratio['ci'][0]:.2f}, {ratio['ci'][1]:.2f}]" if ratio else "—"


def verdict(result: dict) -> str:
    """The bar, at batch 1: the fastest edgeft row within 1 point of pytorch-fp32's accuracy against 8x / 2x."""
    rows = [row for row in result["rows"] if row["batch"] == min(r["batch"] for r in result["rows"])
            and not row["name"].endswith("(A/A)")]
    reference = next(row for row in rows if row["name"] == PYTORCH)
    eligible = [row for row in rows if row["name"].startswith("edgeft:")
                and row["accuracy"] >= reference["accuracy"] - ACCURACY_WINDOW]
    if not eligible:
        return "bar: no edgeft row within 1 point of pytorch-fp32's accuracy"
    best = min(eligible, key=lambda row: row["p50_ms"])
    peers = [row for row in rows if not row["name"].startswith("edgeft:")]
    fastest_peer = min(peers, key=lambda row: row["p50_ms"])
    lines = [f"bar (batch {best['batch']}): {best['name']} ({best['accuracy']:.2%}, pytorch-fp32 "
             f"{reference['accuracy']:.2%})"]
    for baseline, key in ((PYTORCH, "ratio_vs_pytorch_fp32"), (ORT, "ratio_vs_optimum_ort_int8")):
        ratio, mark = best[key], BAR[baseline]
        met = ratio["ci"][0] >= mark
        lines.append(f"  vs {baseline}: {ratio['value']:.2f}x [{ratio['ci'][0]:.2f}, {ratio['ci'][1]:.2f}] "
                     f"(bar >= {mark:g}x with the interval's lower end): {'met' if met else 'NOT met'}")
    lines.append(f"  fastest peer: {fastest_peer['name']} at {fastest_peer['p50_ms']:.2f} ms p50; "
                 f"{best['name']} {fastest_peer['p50_ms'] / best['p50_ms']:.2f}x of it")
    return "\n".join(lines)


def update_readme(table: str, bar: str, command: str) -> None:
    """Replace the generated block of benchmarks/README.md (between the deploy_vs_peers markers)."""
    start, end = "<!-- deploy_vs_peers:start -->", "<!-- deploy_vs_peers:end -->"
    text = README.read_text() if README.is_file() else f"# Benchmarks\n\n{start}\n{end}\n"
    if start not in text:
        text += f"\n{start}\n{end}\n"
    block = f"{start}\n`{command}`\n\n{table}\n\n```\n{bar}\n```\n{end}"
    text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    README.write_text(text)


@contextlib.contextmanager
def _locked(path: Path | None):
    """An exclusive flock on `path` (shared with `flock FILE command`), so recorded timings never overlap."""
    if path is None:
        yield
        return
    import fcntl

    with open(path, "a") as handle:
        print(f"waiting for {path} ...", flush=True)
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_json(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(handle, "w") as stream:
        json.dump(result, stream, indent=1)
    os.chmod(temporary, 0o644)  # mkstemp creates 0600
    os.replace(temporary, path)


if __name__ == "__main__":
    sys.exit(main())
