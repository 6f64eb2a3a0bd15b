import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, write_recipe

from edgeft.atomic import last_checkpoint
from edgeft.errors import EdgeftError
from edgeft.models import load_classifier
from edgeft.recipe import validate_recipe
from edgeft.tune import tune

RUN_FILES = {"adapter", "merged", "metrics.json", "recipe.lock.yaml", "train_log.jsonl", "curves.png",
             "confusion.png", "README.md"}


def test_lora_tune_writes_complete_run(tiny_recipe, tmp_path):
    # execute
    run = tune(validate_recipe(tiny_recipe))
    # assert
    assert RUN_FILES <= {p.name for p in run.iterdir()}
    assert not (tmp_path / ".run.partial").exists()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["labels"] == ["card_lost", "fees", "transfer"]
    for key in ("accuracy", "macro_f1", "per_class"):
        assert key in metrics["test"] and key in metrics["validation"]
    assert metrics["test"]["rows"] == 30
    assert 0 < metrics["params"]["trainable"] < metrics["params"]["total"]
    assert metrics["merge"]["max_abs_diff"] < 1e-4
    assert metrics["train"]["seconds"] > 0 and metrics["train"]["samples_per_second"] > 0
    assert (run / "adapter" / "adapter_model.safetensors").exists()
    assert not list(run.rglob("*.bin")) and not list(run.rglob("*.pt"))
    assert any("loss" in json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines())
    card = (run / "README.md").read_text()
    assert "Labels: 3" in card and f"edgeft export {run} " in card and "load_classifier" in card


@pytest.mark.parametrize("kind", ["dora", "ia3", "full", "head-only"])
def test_methods_train_and_merge(tiny_recipe, kind):
    tiny_recipe["method"]["kind"] = kind
    tiny_recipe["training"]["epochs"] = 1
    run = tune(validate_recipe(tiny_recipe))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["merge"]["supported"] and metrics["merge"]["max_abs_diff"] < 1e-4
    trainable, total = metrics["params"]["trainable"], metrics["params"]["total"]
    assert (trainable == total) if kind == "full" else (trainable < total)
    if kind == "head-only":
        assert trainable == 32 * 3 + 3  # hidden 32 x 3 labels + bias


def test_tuning_continues_from_a_saved_adapter_and_head(tiny_recipe, tmp_path):
    # setup
    first = tune(validate_recipe(tiny_recipe))
    tiny_recipe.update(output=str(tmp_path / "continued"))
    tiny_recipe["method"]["adapter"] = str(first / "adapter")
    tiny_recipe["training"].update(max_steps=1, learning_rate=1e-12, head_learning_rate=1e-12)
    # execute
    continued = tune(validate_recipe(tiny_recipe))
    # assert: the continued run starts where the first ended (adapter and head), so one negligible step scores the same
    before, after = (json.loads((run / "metrics.json").read_text())["test"] for run in (first, continued))
    assert after["accuracy"] == before["accuracy"] and after["macro_f1"] == pytest.approx(before["macro_f1"])


def test_a_saved_adapter_needs_an_adapter_method(tiny_recipe):
    tiny_recipe["method"] = {"kind": "ia3", "adapter": "runs/x/adapter"}
    with pytest.raises(EdgeftError, match="method.adapter"):
        validate_recipe(tiny_recipe)


@pytest.mark.parametrize("kind", ["prefix", "ptuning-v2"])
def test_prefix_methods_train_but_do_not_merge(tiny_recipe, kind):
    tiny_recipe["method"]["kind"] = kind
    tiny_recipe["training"]["epochs"] = 1
    run = tune(validate_recipe(tiny_recipe))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["merge"]["supported"] is False and "virtual tokens" in metrics["merge"]["reason"]
    assert not (run / "merged").exists() and (run / "adapter" / "adapter_config.json").exists()


def test_merged_model_reloads_to_the_same_predictions(tiny_recipe):
    run = tune(validate_recipe(tiny_recipe))
    model = load_classifier(run / "merged")
    ids = torch.tensor([[101, 2000, 2001, 102]])
    logits = model(ids, torch.ones_like(ids))
    assert logits.shape == (1, 3)
    assert model.head_config.pooling == "cls" and model.head_config.max_length == 32


def test_existing_output_is_kept_without_overwrite(tiny_recipe):
    recipe = validate_recipe(tiny_recipe)
    run = tune(recipe)
    stamp = (run / "metrics.json").stat().st_mtime_ns
    with pytest.raises(EdgeftError, match="already exists; pass --overwrite"):
        tune(recipe)
    assert (run / "metrics.json").stat().st_mtime_ns == stamp
    tune(recipe, overwrite=True)
    assert (run / "metrics.json").stat().st_mtime_ns != stamp


def test_failed_run_leaves_no_run_folder(tiny_recipe, tmp_path):
    tiny_recipe["data"]["test"] = str(tmp_path / "missing.csv")
    with pytest.raises(EdgeftError):
        tune(validate_recipe(tiny_recipe))
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where no GPU offers bfloat16")
def test_bf16_precision_without_bf16_hardware_is_refused(tiny_recipe, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("edgeft.training.cpu_has_bf16", lambda: False)
    tiny_recipe["training"]["precision"] = "bf16"
    with pytest.raises(EdgeftError, match="training.precision: bf16 needs a GPU or CPU with bfloat16"):
        tune(validate_recipe(tiny_recipe))
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available() or not torch.ops.mkldnn._is_mkldnn_bf16_supported(),
                    reason="needs a CPU with native bfloat16 and no GPU")
def test_bf16_precision_trains_on_a_cpu_with_bf16(tiny_recipe):
    tiny_recipe["training"].update(precision="bf16", epochs=1)
    metrics = json.loads((tune(validate_recipe(tiny_recipe)) / "metrics.json").read_text())
    assert metrics["train"]["precision"] == "bf16"
    assert metrics["merge"]["max_abs_diff"] < 1e-4  # the merge check runs in float32 whatever the training ran in


def test_diverged_training_fails_instead_of_saving_a_nan_adapter(tiny_recipe, tmp_path):
    tiny_recipe["training"].update(learning_rate=1e30, max_steps=20, eval_steps=None)
    with pytest.raises(EdgeftError, match="training diverged: (grad_norm|loss|eval_loss) is nan") as failure:
        tune(validate_recipe(tiny_recipe))
    assert failure.value.exit_code == 1
    assert not (tmp_path / "run").exists()
    logged = [json.loads(line) for line in (tmp_path / ".run.partial" / "train_log.jsonl").read_text().splitlines()]
    assert logged and any(value != value for record in logged for value in record.values() if isinstance(value, float))


def test_resume_without_checkpoint_is_refused(tiny_recipe):
    with pytest.raises(EdgeftError, match="nothing to resume"):
        tune(validate_recipe(tiny_recipe), resume=True)


def test_a_checkpoint_killed_while_its_state_was_written_is_skipped(tmp_path):
    # setup: checkpoint 20 complete; 40 killed while writing its trainer_state.json; 60 killed before it
    for step, state in ((20, '{"global_step": 20}'), (40, ""), (60, None)):
        folder = tmp_path / "checkpoints" / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
    # execute / assert
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoints" / "checkpoint-20")


def _edgeft(*args, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "edgeft", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def test_resume_after_sigkill_reaches_the_same_total_steps(tiny_recipe, tmp_path):
    # setup: many short steps, a checkpoint every 20
    tiny_recipe["training"].update(max_steps=160, eval_steps=20, batch_size=4, early_stopping_patience=None)
    path = write_recipe(tiny_recipe, tmp_path / "r.yaml")
    partial = tmp_path / ".run.partial" / "checkpoints"
    # execute: kill as soon as one checkpoint is complete, then resume
    process = _edgeft("tune", str(path))
    deadline = time.time() + 120
    while last_checkpoint(partial.parent) is None:
        assert process.poll() is None, process.stdout.read()
        assert time.time() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "run").exists()
    resumed = _edgeft("tune", str(path), "--resume")
    output = resumed.communicate(timeout=300)[0]
    # assert
    assert resumed.returncode == 0, output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 160
    # speed counts the rows this process trained on (batch 4), not the whole run's over its time
    train = metrics["train"]
    assert train["resumed_from_step"] >= 20
    assert train["samples_per_second"] == pytest.approx((160 - train["resumed_from_step"]) * 4 / train["seconds"],
                                                        rel=0.05)
    assert {"test", "validation", "merge", "params"} <= set(metrics)
    logged = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert {r["step"] for r in logged if "eval_accuracy" in r} >= {20, 160}
    # not a terminal: plain progress lines, and third-party noise (torchao, warnings) in the run's tune.log only
    assert "step 160/160: train loss" in output and "validation accuracy" in output
    assert "Failed to load" not in output and "site-packages" not in output
    assert "warning: data.test: 1 of 30 rows also in train" in output  # edgeft's own warning, one plain line
    assert (tmp_path / "run" / "tune.log").exists()


@pytest.mark.slow
def test_torchrun_two_processes(tiny_recipe, tmp_path):
    tiny_recipe["training"]["epochs"] = 1
    path = write_recipe(tiny_recipe, tmp_path / "r.yaml")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"]
    result = subprocess.run([*torchrun, "-m", "edgeft", "tune", str(path)], cwd=REPO, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # 96 training rows, batch 8 per process, 2 processes: 6 steps per epoch instead of 12
    assert metrics["train"]["steps"] == 6
    assert metrics["test"]["rows"] == 30


def test_a_saved_head_continues_only_on_the_same_labels(tmp_path):
    # setup
    from edgeft.models import TINY_BERT, HeadConfig, SequenceClassifier, load_encoder, resolve_model

    def classifier(labels):
        return SequenceClassifier(load_encoder(resolve_model(TINY_BERT)), HeadConfig(labels=labels))

    saved = classifier(["fees", "transfer"])
    saved.save_head(tmp_path)
    # execute / assert
    with pytest.raises(EdgeftError, match="labels differ"):
        classifier(["fees", "card_lost"]).load_head(tmp_path)
    same = classifier(["fees", "transfer"])
    same.load_head(tmp_path)
    assert torch.equal(same.head.weight, saved.head.weight) and torch.equal(same.head.bias, saved.head.bias)
