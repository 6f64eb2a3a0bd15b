"""The `edgeft` command line. Each command parses its options and calls one stage function; no logic lives here."""

from __future__ import annotations

import importlib.util
import json
import sys
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


def require(extra: str, what: str, *modules: str) -> None:
    """Fail with the install line when an optional extra's modules are missing."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        click.echo(f"error: {missing_extra(what, extra)}", err=True)
        sys.exit(2)


@click.group()
@click.version_option(__version__, prog_name="edgeft")
def main():
    """edgeft: fine-tune, compress, export and benchmark text classifiers for edge devices."""


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


# --- devices / bench (issue 4) ---
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
@click.option("--runs", default=100, show_default=True, help="Timed runs after warm-up.")
@click.option("--warmup", default=10, show_default=True, help="Untimed warm-up runs.")
@click.option("--batch", default=1, show_default=True, help="Texts per call.")
@click.option("--seq-len", type=int, help="Tokens per text (default: the bundle's reference texts, real lengths).")
@click.option("--threads", type=int, help="Inference threads (default: the profile's).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write the report(s) as JSON here.")
@click.option("--compare", is_flag=True, help="Bench several BUNDLES and draw a PNG bar chart side by side.")
@click.option("--plot", type=click.Path(path_type=Path), default=Path("bench_compare.png"), show_default=True,
              help="Where --compare writes its chart.")
def bench_command(bundles, target, remote, remote_python, ssh_options, wheel, runs, warmup, batch, seq_len, threads,
                  json_path, compare, plot):
    """Latency of BUNDLE on the host, on a device over SSH, or estimated for a device profile.

    Example usage:

        edgeft bench runs/quickstart/bundles/onnx-int8
        edgeft bench runs/quickstart/bundles/onnx-int8 --target rpi4
        edgeft bench bundle/ --target rpi4 --remote ssh://pi@raspberrypi.local
        edgeft bench --compare a/ b/ c/ --plot compare.png
    """
    from edgeft.bench import bench_many
    from edgeft.bench.report import show

    reports = run_stage(bench_many, bundles, target, compare=compare, remote=remote, remote_python=remote_python,
                        ssh_options=list(ssh_options), install=wheel, runs=runs, warmup=warmup, batch=batch,
                        seq_len=seq_len, threads=threads, json_path=json_path, plot=plot)
    show(reports)
    for path in (json_path, plot if compare else None):
        if path:
            click.echo(f"wrote {path}")
