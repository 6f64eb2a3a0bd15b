"""Interrupted work: `edgeft tune` SIGKILLed at 5 random points after its first checkpoint, then `--resume`d,
ends with the metrics of an uninterrupted run; no run folder exists before the run completes."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_recipe

KILLS = 5


def _tune(recipe_file: Path, *flags: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[2]),
                                                                        os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "edgeft", "tune", str(recipe_file), *flags], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _newest_step(partial: Path) -> int:
    """The step of the newest complete checkpoint (trainer_state.json is written last), 0 if none."""
    return max((int(p.parent.name.split("-")[1]) for p in (partial / "checkpoints").glob("checkpoint-*/trainer_state.json")),
               default=0)


@pytest.mark.slow
def test_sigkill_at_5_random_points_then_resume_matches_an_uninterrupted_run(tiny_recipe, tmp_path, capsys):
    # setup: enough steps and checkpoints to kill between them
    tiny_recipe["training"].update(max_steps=48, eval_steps=4, early_stopping_patience=None, epochs=20)
    reference = {**tiny_recipe, "output": str(tmp_path / "reference")}
    interrupted = {**tiny_recipe, "output": str(tmp_path / "interrupted")}
    output, partial = Path(interrupted["output"]), tmp_path / ".interrupted.partial"
    rng = random.Random(12)
    assert _tune(write_recipe(reference, tmp_path / "reference.yaml")).wait(timeout=600) == 0
    recipe_file = write_recipe(interrupted, tmp_path / "interrupted.yaml")

    # execute: kill at random moments after randomly chosen checkpoints (steps fixed in advance, so a fast machine
    # cannot finish the run between two kills), resume each time
    targets = sorted(rng.sample(range(4, 48, 4), KILLS))
    kills, flags, final = 0, [], None
    for target in targets:
        process = _tune(recipe_file, *flags)
        deadline = time.monotonic() + 600
        while process.poll() is None and time.monotonic() < deadline and _newest_step(partial) < target:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.02))
        if process.poll() is not None:
            final = process  # finished before this kill
            break
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
        assert not output.exists(), "a run folder appeared before the run completed"
        flags = ["--resume"]
    final = final or _tune(recipe_file, *flags)
    log = final.communicate(timeout=600)[0]

    # assert
    assert final.returncode == 0, log[-2000:]
    expected = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    got = json.loads((output / "metrics.json").read_text())
    with capsys.disabled():
        print(f"\ntune SIGKILL/resume: killed {kills} times, resumed {kills}, final test accuracy "
              f"{got['test']['accuracy']:.4f} vs {expected['test']['accuracy']:.4f} uninterrupted")
    assert kills == KILLS
    assert got["train"]["steps"] == expected["train"]["steps"]
    assert abs(got["test"]["accuracy"] - expected["test"]["accuracy"]) <= 0.02
    assert abs(got["validation"]["accuracy"] - expected["validation"]["accuracy"]) <= 0.02
    assert not partial.exists() and not list(tmp_path.glob(".*.partial"))
