"""The search on the tiny model: a 4-trial search that resumes after a kill, two workers on one journal, the CLI."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import optuna
import pytest
from click.testing import CliRunner

from edgeft.cli import main

# Small and fast: one export target, a 2-step distillation, few timing runs.
FAST = ["--set", "export.targets=[onnx-int8]", "--set", "distill.settings.max_steps=2", "--set", "distill.epochs=[1]",
        "--set", "search.quick_rows=16", "--runs", "3", "--set", "bench.warmup=1", "--set", "bench.texts=4",
        "--set", "search.halving_rate=1", "--set", "bench.final_rounds=1", "--time-budget", "15m"]


@pytest.fixture
def run(tiny_run, tmp_path):
    """A private copy of the tuned tiny run (each test owns its study and cache)."""
    return shutil.copytree(tiny_run, tmp_path / "run")


def _study(run):
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(run / "compress" / "search" / "host.journal")))
    return optuna.load_study(study_name="compress-host", storage=storage)


def _finished(study):
    return [t for t in study.get_trials(deepcopy=False) if t.state in (optuna.trial.TrialState.COMPLETE,
                                                                         optuna.trial.TrialState.PRUNED)]


def test_search_resumes_after_a_kill(run):
    # setup: a 4-trial search in its own process, killed once its first trial is measured
    command = [sys.executable, "-m", "edgeft", "compress", str(run), "--trials", "4", *FAST]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    journal = run / "compress" / "search" / "host.journal"
    deadline = time.time() + 600
    complete = []
    while time.time() < deadline and process.poll() is None:
        if journal.exists():
            study = _study(run)
            complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
            if complete and any(key.startswith("run_seconds:") for key in study.user_attrs):
                break  # a trial measured and its run's clock written (the callbacks after it ran)
        time.sleep(1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert complete, "no trial finished before the kill"
    first = complete[0]
    bundle = first.user_attrs["candidate"]["bundle"]
    stamp = os.stat(os.path.join(bundle, "manifest.json")).st_mtime_ns
    # execute
    result = CliRunner().invoke(main, ["compress", str(run), "--trials", "4", "--resume", *FAST])
    # assert: the finished trial is kept as it was, the rest ran, four finished in all
    assert result.exit_code == 0, result.output
    study = _study(run)
    assert len(_finished(study)) >= 4
    kept = study.trials[first.number]
    assert kept.state == optuna.trial.TrialState.COMPLETE and kept.values == first.values
    assert os.stat(os.path.join(bundle, "manifest.json")).st_mtime_ns == stamp
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    output = run / "compress" / "host"
    data = json.loads((output / "candidates.json").read_text())
    summary, candidates = data["summary"], data["candidates"]
    assert summary["best"] in {c["name"] for c in candidates} and (output / "best" / "manifest.json").is_file()
    tested = {c["name"] for c in candidates if c["test"] is not None}
    assert tested == set(summary["front"]) | {summary["best"]}  # test evaluated for the front (and best) only
    assert summary["reference"]["test"] is not None and summary["budget_statistic"] == "p50"
    runs = [key for key in study.user_attrs if key.startswith("run_seconds:")]
    assert len(runs) == 2 and summary["searched_seconds"] > summary["seconds"]  # the killed run's time counts
    report = (output / "report.md").read_text()
    assert "Chosen on validation" in report and (output / "pareto.png").is_file()
    assert "validation accuracy" in (output / "search.log").read_text()  # the distillations' progress: in the log
    assert "validation accuracy" not in result.output
    # resuming with another search space is refused: its trials would mix with these
    result = CliRunner().invoke(main, ["compress", str(run), "--resume", *FAST, "--set", "prune.heads=[0.5]"])
    assert result.exit_code == 2 and "other compress settings" in result.output


def test_two_workers_share_one_journal(run):
    # execute
    result = CliRunner().invoke(main, ["compress", str(run), "--trials", "4", "--workers", "2", *FAST])
    # assert
    assert result.exit_code == 0, result.output
    study = _study(run)
    finished = _finished(study)
    assert len(finished) >= 4
    workers = {t.user_attrs["worker"] for t in study.trials if "worker" in t.user_attrs}
    assert len(workers) == 2 and os.getpid() not in workers
    assert (run / "compress" / "host" / "candidates.json").is_file()


def test_print_config_shows_the_chain_and_the_search(run):
    result = CliRunner().invoke(main, ["compress", str(run), "--print-config", "--passes", "prune,export",
                                       "--time-budget", "90m", "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "passes:\n  - prune\n  - export" in result.output
    assert "time_budget: 90m" in result.output and "workers: 2" in result.output
    assert "layers:\n    - 0\n    - 1" in result.output  # the recipe's compress section is kept


def test_recipe_section_survives_a_merged_folder(run):
    result = CliRunner().invoke(main, ["compress", str(run / "merged"), "--print-config"])
    assert result.exit_code == 0 and "layers:\n    - 0\n    - 1" in result.output


@pytest.mark.parametrize("flags, expected", [
    (["--passes", "prune,export", "--distill-epochs", "3"], "compress.distill: set, but the chain"),
    (["--passes", "prune,vocab"], "must end with 'export'"),
    (["--passes", "prune,quantum,export"], "unknown pass 'quantum'"),
    (["--time-budget", "soon"], "expected a duration"),
    (["--set", "prune.heads=[2]"], "compress.prune.heads.0"),
])
def test_bad_settings_exit_2(run, flags, expected):
    result = CliRunner().invoke(main, ["compress", str(run), "--print-config", *flags])
    assert result.exit_code == 2 and expected in result.output, result.output


def test_a_failing_setting_is_recorded_once_and_not_tried_again(run, monkeypatch):
    # setup: the OpenVINO export fails every time (as an export that does not verify would)
    from edgeft.compress import export as export_pass
    from edgeft.errors import EdgeftError

    calls = []
    real = export_pass.run

    def run_export(model_dir, config, out_dir, context):
        calls.append(config.format)
        if config.format == "openvino":
            raise EdgeftError("openvino int8 failed verification against PyTorch")
        return real(model_dir, config, out_dir, context)

    monkeypatch.setattr(export_pass, "run", run_export)
    # execute: export only, two targets, more trials than settings
    result = CliRunner().invoke(main, ["compress", str(run), "--passes", "export", "--trials", "6", "--runs", "3",
                                       "--set", "bench.warmup=1", "--set", "bench.texts=4", "--time-budget", "15m",
                                       "--set", "bench.final_rounds=1",
                                       "--set", "export.targets=[onnx-int8,openvino-int8]"])
    # assert: one attempt, the reason on the trial and in the report, the other target chosen
    assert result.exit_code == 0, result.output
    assert calls.count("openvino") == 1
    stopped = [t.user_attrs.get("stopped", "") for t in _study(run).trials]
    assert any(reason.startswith("failed: openvino int8 failed verification") for reason in stopped)
    report = (run / "compress" / "host" / "report.md").read_text()
    assert "failed: openvino int8 failed verification" in report
    summary = json.loads((run / "compress" / "host" / "candidates.json").read_text())["summary"]
    assert summary["best"].endswith("onnx-int8")
