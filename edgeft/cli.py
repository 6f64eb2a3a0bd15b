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
