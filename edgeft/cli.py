"""The `edgeft` command line. Each command parses its options and calls one stage function; no logic lives here."""

from __future__ import annotations

import importlib.util
import json
import sys
from functools import partial
from pathlib import Path

import click

from edgeft import __version__
from edgeft.errors import EdgeftError, missing_extra


def run_stage(function, *args, **kwargs):
    """Call a stage function, turning EdgeftError into `error:` lines and its exit code (no traceback)."""
    try:
        return function(*args, **kwargs)
    except EdgeftError as error:
        for problem in error.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(error.exit_code)


def run_logged_stage(log_file: Path, function, *args, **kwargs):
    """`run_stage` with third-party output (converters' C++ logs, warnings, prints) sent to `log_file`, while
    edgeft's progress (rich's console) stays on the terminal. Without the log's folder (a mistyped path) nothing is
    created: the stage reports the bad input itself."""
    import rich

    from edgeft.console import third_party_to

    def logged():
        with third_party_to(log_file) as terminal:
            rich.reconfigure(file=terminal)
            try:
                return function(*args, **kwargs)
            finally:
                rich.reconfigure()

    return run_stage(logged if log_file.parent.is_dir() else partial(function, *args, **kwargs))


def require(extra: str, what: str, *modules: str) -> None:
    """Fail with the install line when an optional extra's modules are missing."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        click.echo(f"error: {missing_extra(what, extra)}", err=True)
        sys.exit(2)


@click.group()
@click.version_option(__version__, prog_name="edgeft")
def main():
    """edgeft: fine-tune, compress, export and benchmark text models (classifiers, taggers, generators) for edge
    devices."""
    from edgeft.console import plain_warnings

    plain_warnings()


@main.command()
@click.argument("recipe_file", type=click.Path(path_type=Path))
@click.option("--output", type=click.Path(path_type=Path), help="Run folder (default: the recipe's output).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe field, e.g. training.epochs=1.")
@click.option("--dry-run", is_flag=True, help="Print the resolved recipe and a data summary, then stop.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run folder once the new run is complete.")
def tune(recipe_file, output, overrides, dry_run, resume, overwrite):
    """Fine-tune a classifier from RECIPE_FILE, evaluate it and merge the adapter.

    Example usage:

        edgeft tune recipes/quickstart.yaml --set training.epochs=1
    """
    from edgeft.recipe import load_recipe

    recipe = run_stage(load_recipe, recipe_file, overrides)
    require("tune", "edgeft tune", "torch", "transformers", "peft", "datasets", "sklearn")
    from edgeft import tune as tune_stage

    if dry_run:
        summary = run_stage(tune_stage.dry_run, recipe)
        click.echo(summary["recipe"])
        click.echo(json.dumps(summary["data"], indent=2))
        return
    folder = run_stage(tune_stage.tune, recipe, output=output, resume=resume, overwrite=overwrite)
    click.echo(f"run folder: {folder}")


# --- compress ---
@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--target", default="host", show_default=True, help="Device profile name or YAML path.")
@click.option("--time-budget", help="Wall-clock budget of the search, e.g. 60m or 1h30m (default: the recipe's, 60m).")
@click.option("--trials", type=int, help="Trials to finish (default: until the time budget).")
@click.option("--workers", type=int, help="Worker processes sharing the study.")
@click.option("--storage", help="Optuna storage URL shared by workers and machines (default: a journal file).")
@click.option("--resume", is_flag=True, help="Continue the target's search from its study without redoing trials.")
@click.option("--passes", help="The chain, comma-separated, export last (default: prune,vocab,distill,export).")
@click.option("--distill-epochs", help="Distillation epochs to try, comma-separated, e.g. 3 or 1,3.")
@click.option("--budget-ms", type=float, help="Latency budget on p50, ms (default: the profile's).")
@click.option("--max-size-mb", type=float, help="Size budget of the chosen bundle's model files, MB (default: none).")
@click.option("--max-metric-drop", type=float, help="Largest accepted validation metric loss, e.g. 0.01 for one point.")
@click.option("--objective", type=click.Choice(["metric", "latency"]), help="What `best` optimises within budget.")
@click.option("--runs", type=int, help="Timed runs per candidate.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override any compress field, e.g. prune.layers=[0,1] or export.targets=[onnx-int8].")
@click.option("--remote", help="Measure latency on the device over SSH: ssh://user@host[:port].")
@click.option("--output", type=click.Path(path_type=Path), help="Output folder (default RUN_DIR/compress/<target>).")
@click.option("--print-config", is_flag=True, help="Print the resolved configuration (chain and search) and stop.")
def compress(run_dir, target, time_budget, trials, workers, storage, resume, passes, distill_epochs, budget_ms,
             max_size_mb, max_metric_drop, objective, runs, overrides, remote, output, print_config):
    """Search prune, vocab, distill and export settings of RUN_DIR for a target; choose on validation data.

    A causal LM's search is over its int8/int4 exports (ONNX, OpenVINO), each scored by BLEU in its own runtime
    and timed per decoded token on this host.

    Example usage:

        edgeft compress runs/banking77-minilm-lora --target host --time-budget 90m
        edgeft compress runs/quickstart --target rpi4 --trials 12 --workers 2
        edgeft compress runs/quickstart --set prune.layers=[0,1] --print-config
    """
    require("compress", "edgeft compress", "torch", "onnx", "onnxruntime", "optuna")
    import yaml

    from edgeft import compress as compress_stage

    flags = {"search.time_budget": time_budget, "search.trials": trials, "search.workers": workers,
             "search.storage": storage, "passes": passes and f"[{passes}]",
             "distill.epochs": distill_epochs and f"[{distill_epochs}]", "budget_ms": budget_ms, "size_mb": max_size_mb,
             "max_metric_drop": max_metric_drop, "objective": objective, "bench.runs": runs}
    settings = [f"{key}={value}" for key, value in flags.items() if value is not None] + list(overrides)
    config = run_stage(compress_stage.resolve_config, run_dir, settings)
    if print_config:
        click.echo(yaml.safe_dump({"compress": config.model_dump(mode="json")}, sort_keys=False))
        return
    folder = run_stage(compress_stage.compress, run_dir, target, config, remote=remote, output=output, resume=resume)
    summary = json.loads((folder / "candidates.json").read_text())["summary"]
    click.echo(f"report: {folder / 'report.md'}  (third-party output: {folder / 'search.log'})")
    click.echo(f"best: {folder / 'best'} ({summary['best']}: {summary['reason']})")


# --- devices / bench ---
@main.group(invoke_without_command=True)
@click.pass_context
def devices(context):
    """List the device profiles (`devices/*.yaml`); `edgeft devices show NAME` prints one.

    Example usage:

        edgeft devices
        edgeft devices show rpi4
    """
    if context.invoked_subcommand is None:
        from rich.console import Console

        from edgeft.devices import profiles_table

        Console().print(run_stage(profiles_table))


@devices.command("show")
@click.argument("name")
def devices_show(name):
    """Print one profile (a shipped NAME or a YAML path) with its source comments; `host` is detected."""
    from edgeft.devices import profile_text

    click.echo(run_stage(profile_text, name))


@main.command("bench")
@click.argument("bundles", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--target", default="host", show_default=True, help="Device profile name or YAML path.")
@click.option("--remote", help="Measure on a device over SSH: ssh://user@host[:port].")
@click.option("--remote-python", help="Python on the device with the edgeft runtime (default: the profile's).")
@click.option("--ssh-option", "ssh_options", multiple=True, help="Extra ssh/scp option, e.g. --ssh-option=-F --ssh-option=cfg.")
@click.option("--install", "wheel", type=click.Path(path_type=Path), help="Install this edgeft wheel on the device first.")
@click.option("--emulate", is_flag=True, help="Run the bundle's wheel in an emulated root of the target's CPU "
              "(qemu) and check its predictions equal this host's; correctness only, no timings.")
@click.option("--rounds", default=5, show_default=True, help="Interleaved rounds, one fresh process per bundle each.")
@click.option("--seconds", default=1.0, show_default=True, help="Least timed wall time per process.")
@click.option("--runs", default=20, show_default=True, help="Least timed calls per process.")
@click.option("--warmup", default=10, show_default=True, help="Untimed warm-up calls per process.")
@click.option("--batch", default=1, show_default=True, help="Texts per call.")
@click.option("--seq-len", type=int, help="Tokens per text (default: the bundle's reference sample, real lengths).")
@click.option("--threads", type=int, help="Inference threads (default: the profile's).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write the report(s) as JSON here.")
@click.option("--compare", is_flag=True, help="Bench several BUNDLES and draw a PNG bar chart side by side.")
@click.option("--plot", type=click.Path(path_type=Path), default=Path("bench_compare.png"), show_default=True,
              help="Where --compare writes its chart.")
@click.option("--new-tokens", default=64, show_default=True,
              help="Causal-LM bundles: tokens decoded per generation (--seq-len: prompt tokens).")
def bench_command(bundles, target, remote, remote_python, ssh_options, wheel, emulate, rounds, seconds, runs, warmup,
                  batch, seq_len, threads, json_path, compare, plot, new_tokens):
    """Latency of BUNDLE on the host, on a device over SSH, or estimated for a device profile.

    Measured numbers come from interleaved rounds of fresh processes on the bundle's reference sample of real texts
    (p50/p90 with bootstrap 95% intervals, an A/A row showing the run's noise floor, raw latencies in --json).

    Example usage:

        edgeft bench runs/quickstart/bundles/onnx-int8
        edgeft bench runs/quickstart/bundles/onnx-int8 --target rpi4
        edgeft bench runs/quickstart/bundles/onnx-int8 --target rpi4 --emulate
        edgeft bench bundle/ --target rpi4 --remote ssh://pi@raspberrypi.local
        edgeft bench --compare a/ b/ c/ --plot compare.png
        edgeft bench runs/e2e-smollm2-lora/bundles/onnx-int4 --seq-len 100 --new-tokens 64   # a causal LM

    A causal-LM bundle reports time to first token, prompt tokens/s and decode tokens/s (p50/p90) and peak RSS, on
    the host, from --rounds fresh processes of the light runtime, each generating 3 times (eos ignored).
    """
    from edgeft.bench.generation import bench_generation, is_generation_bundle, render
    from edgeft.bench.report import show

    if all(is_generation_bundle(bundle) for bundle in bundles):
        reports = run_stage(bench_generation, list(bundles), threads=threads or 2, prompt_tokens=seq_len,
                            new_tokens=new_tokens, rounds=rounds, json_path=json_path)
        click.echo(render(reports))
        return

    if emulate:
        from edgeft.bench.emulate import emulate as run_emulated
        from edgeft.bench.report import show_emulated

        if len(bundles) != 1:
            raise click.UsageError("--emulate checks one bundle")
        result = run_stage(run_emulated, bundles[0], target, json_path=json_path)
        show_emulated(result)
        if not result["equal"]:
            sys.exit(1)
        return
    from edgeft.bench import bench_many

    reports = run_stage(bench_many, bundles, target, compare=compare, remote=remote, remote_python=remote_python,
                        ssh_options=list(ssh_options), install=wheel, runs=runs, warmup=warmup, batch=batch,
                        seq_len=seq_len, threads=threads, rounds=rounds, seconds=seconds, json_path=json_path,
                        plot=plot)
    show(reports)
    for path in (json_path, plot if compare else None):
        if path:
            click.echo(f"wrote {path}")


# --- export / runtime ---


@main.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--format", "format_", required=True, help="onnx, openvino or tflite.")
@click.option("--precision", default="fp32", show_default=True,
              help="onnx: fp32|int8|int4 (a causal LM also int4-genai: onnxruntime-genai's builder, and "
                   "int4-lora: its int4 base model with the LoRA update in fp32); "
                   "openvino: fp32|fp16|int8|int8-weights|int4; tflite: fp32|int8|int8-emb4 (int8 with a 4-bit "
                   "embedding table).")
@click.option("--output", type=click.Path(path_type=Path), help="Bundle folder (default: RUN_DIR/bundles/FORMAT-PRECISION).")
@click.option("--min-agreement", default=0.9, show_default=True, help="Top-1 agreement with PyTorch a quantized bundle needs.")
@click.option("--samples", default=256, show_default=True, help="Test texts of the run's recipe to verify on.")
@click.option("--sign", "sign_key", type=click.Path(path_type=Path), help="Sign the manifest with this Ed25519 private key (edgeft keygen).")
def export_command(run_dir, format_, precision, output, min_agreement, samples, sign_key):
    """Export RUN_DIR (a tune run or a classifier folder) to a verified bundle.

    The bundle is run in its own runtime on real test texts and compared with the PyTorch model; one that misses
    its tolerance is not written (fp32: 100% top-1 agreement; quantized: --min-agreement).

    Example usage:

        edgeft export runs/banking77-minilm-lora --format onnx --precision int8
    """
    from edgeft.export import export

    log_file = Path(run_dir) / "export.log"
    folder = run_logged_stage(
        log_file,
        export, run_dir, format_, precision, output, min_agreement=min_agreement, n_verify=samples, sign_key=sign_key
    )
    verification = json.loads((folder / "manifest.json").read_text())["verification"]
    click.echo(
        f"bundle: {folder}  (top-1 agreement {verification['top1_agreement']:.2%}, "
        f"max abs logit diff {verification['max_abs_diff']:.2g}, {verification['n_inputs']} prediction rows of "
        f"{verification['texts']} texts)"
    )
    if log_file.is_file():
        click.echo(f"third-party output: {log_file}")


@main.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("texts", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per text.")
@click.option("--top-k", default=1, show_default=True, type=click.IntRange(min=1), help="Also show the next labels.")
@click.option("--threads", type=click.IntRange(min=1), help="Backend threads (default: its own choice).")
@click.option("--no-self-check", is_flag=True, help="Only warn when the load-time self-check fails.")
def predict(bundle, texts, as_json, top_k, threads, no_self_check):
    """Run a bundle on TEXTS with only the light runtime: labels, or entities for a token classifier ("-" reads
    texts from stdin).

    Example usage:

        edgeft predict runs/banking77-minilm-lora/bundles/onnx-int8 "my card has not arrived" --json
    """
    from edgeft.runtime.predict import predict_texts

    click.echo(run_stage(predict_texts, bundle, list(texts), threads, top_k, "warn" if no_self_check else True,
                         as_json))


@main.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("prompt")
@click.option("--max-new-tokens", default=64, show_default=True, help="Most tokens to generate.")
@click.option("--temperature", default=0.0, show_default=True, help="0 is greedy; higher samples more freely.")
@click.option("--top-p", default=1.0, show_default=True, help="Sample from the smallest set reaching this probability.")
@click.option("--stop", multiple=True, help="Stop before this text (repeatable).")
@click.option("--seed", type=int, help="Seed for sampling.")
@click.option("--raw", is_flag=True, help="Send PROMPT as is, without the bundle's prompt format.")
@click.option("--threads", type=int, help="Backend threads (default: its own choice).")
def generate(bundle, prompt, max_new_tokens, temperature, top_p, stop, seed, raw, threads):
    """Generate text from PROMPT with a causal-LM BUNDLE, streamed as it comes (light runtime only, no torch).

    Example usage:

        edgeft generate runs/e2e-smollm2-lora/bundles/onnx-int4 "name[The Eagle], food[French], area[riverside]"
    """
    from edgeft.runtime.generate import generate_to

    run_stage(generate_to, lambda piece: click.echo(piece, nl=False), bundle, prompt, max_new_tokens, temperature,
              top_p, list(stop), seed, raw, threads)
    click.echo()


@main.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--output", type=click.Path(path_type=Path), default=Path("dist"), show_default=True, help="Wheel folder.")
@click.option("--name", help="Distribution name (default: edgeft-bundle-<run>-<format>-<precision>).")
@click.option("--version", "version_", default="0.1.0", show_default=True, help="Wheel version.")
@click.option("--sign", "sign_key", type=click.Path(path_type=Path), help="Sign the packaged manifest with this Ed25519 private key.")
def package(bundle, output, name, version_, sign_key):
    """Build a wheel holding BUNDLE that depends on the light runtime; `load()` on the device needs no path.

    Example usage:

        edgeft package runs/banking77-minilm-lora/bundles/onnx-int8 --output dist/
    """
    from edgeft.package import package as build_wheel

    wheel = run_stage(build_wheel, bundle, output, name=name, version=version_, sign_key=sign_key)
    click.echo(f"wheel: {wheel}")


@main.command()
@click.argument("stem", type=click.Path(path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace an existing key pair.")
def keygen(stem, overwrite):
    """Make an Ed25519 key pair for signing bundles: STEM.key (private, keep it on the build host) and STEM.pub.

    Example usage:

        edgeft keygen keys/release
        edgeft export runs/banking77-minilm-lora --format onnx --sign keys/release.key
        EDGEFT_TRUSTED_KEYS=keys/release.pub edgeft predict runs/banking77-minilm-lora/bundles/onnx-fp32 "hi"
    """
    from edgeft.runtime.signing import keygen as make_keys

    private, public = run_stage(make_keys, stem, overwrite=overwrite)
    click.echo(f"private key: {private} (signs; keep it secret)\npublic key: {public} (verifies; copy it to devices)")
