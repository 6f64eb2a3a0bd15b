"""E2E NLG with SmolLM2-135M-Instruct: prompt-only BLEU of the base model, BLEU after LoRA, and each bundle's BLEU in
its own runtime with its generation speed.

Usage:
    python -m benchmarks.e2e_smollm2 base [--prompts N] [--chat-template]  # base model, prompt only (no tuning)
    python -m benchmarks.e2e_smollm2 bundles RUN_DIR [--prompts N]  # every bundle under RUN_DIR/bundles/
    python -m benchmarks.e2e_smollm2 by-size RUN_DIR                # test BLEU's precisions and length, by MR size
    python -m benchmarks.e2e_smollm2 coverage RUN_DIR               # values named, seen vs unseen in training
    python -m benchmarks.e2e_smollm2 significance [RUN_DIR]         # every by-size run's test BLEU vs RUN_DIR's:
                                                                    # bootstrap 95% CI over MRs, paired p-value
    python -m benchmarks.e2e_smollm2 checkpoints RUN_DIR --kept DIR  # each kept checkpoint: validation loss,
                                                                    # validation and test BLEU
    python -m benchmarks.e2e_smollm2 average RUN_DIR --kept DIR --counts 2 3 4  # the mean of the last N kept
                                                                    # checkpoints: perplexity, BLEU
    python -m benchmarks.e2e_smollm2 soup RUN_DIR --with RUN_DIR...  # the mean of independent trainings' LoRA
                                                                    # updates (every subset): perplexity, BLEU
    python -m benchmarks.e2e_smollm2 step [--steps N] [--precision bf16]  # seconds per LoRA training step
    python -m benchmarks.e2e_smollm2 precision [--rounds R] [--steps N]  # bf16 autocast vs fp32 step speed-up
    python -m benchmarks.e2e_smollm2 export-base RUN_DIR --formats onnx-fp32,onnx-int4 [--prompts N]
                                                                    # bundles of the untuned model, verified

The prompt format is the recipe's (recipes/e2e-smollm2-lora.yaml: a plain instruction; `base --chat-template` puts it
in the instruction model's chat format, the fairer test of an untuned chat model); one greedy generation per distinct
test MR (the first N MRs of testset_w_refs.csv in file order), scored by sacrebleu corpus BLEU against all of that
MR's references, and ROUGE-L. Writes benchmarks/results/e2e_smollm2_<mode>[_<run>][_chat].json with the command.
Speeds: `edgeft bench BUNDLE...` (edgeft.bench.generation: fresh processes, interleaved rounds).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
RECIPE = REPO / "recipes" / "e2e-smollm2-lora.yaml"


def test_examples(prompts: int | None):
    from edgeft.recipe import load_recipe
    from edgeft.tasks import get_task

    recipe = load_recipe(RECIPE)
    task = get_task("causal-lm")
    splits = task.load_splits(recipe.data, recipe.training.seed)
    return recipe, task.examples(splits.test)[:prompts]


def base(prompts: int | None, chat_template: bool) -> dict:
    """The base model with the recipe's prompt and no tuning, greedy, in PyTorch."""
    from edgeft.decoders import load_decoder, load_decoder_tokenizer, resolve_decoder
    from edgeft.tasks.causal_lm import build_prompt_format, generation_spec, greedy_scores

    recipe, examples = test_examples(prompts)
    source = resolve_decoder(recipe.model.name)
    tokenizer = load_decoder_tokenizer(source)
    spec = generation_spec(recipe)
    spec = spec.model_copy(update={"chat_template": chat_template or spec.chat_template})
    prompt_format = build_prompt_format(tokenizer, spec)
    started = time.perf_counter()
    scores, outputs = greedy_scores(load_decoder(source), tokenizer, examples, prompt_format, spec.max_new_tokens)
    return {"model": str(source), "prompt_format": prompt_format, "seconds": round(time.perf_counter() - started, 1),
            **scores, "samples": [{"prompt": p, "generated": g} for (p, _), g in list(zip(examples, outputs))[:5]]}


def by_size(run: Path, prompts: int | None) -> dict:
    """Where a run's test BLEU goes: the merged model's greedy generations (its scoring prompt and length), with
    sacrebleu's n-gram precisions, length ratio and brevity penalty, overall and per MR size (attribute count)."""
    import sacrebleu

    from edgeft.decoders import load_decoder, load_decoder_tokenizer
    from edgeft.metrics import reference_streams
    from edgeft.tasks.causal_lm import generate_torch

    _, examples = test_examples(prompts)
    settings = json.loads((run / "merged" / "generation.json").read_text())
    model, tokenizer = load_decoder(run / "merged"), load_decoder_tokenizer(run / "merged")
    outputs = generate_torch(model, tokenizer, [p for p, _ in examples], settings["prompt_format"],
                             settings["max_new_tokens"])

    def stats(indices: list[int]) -> dict:
        streams = reference_streams([examples[i][1] for i in indices])
        score = sacrebleu.metrics.BLEU().corpus_score([outputs[i] for i in indices], streams)
        return {"mrs": len(indices), "bleu": round(score.score, 2),
                "precisions": [round(x, 1) for x in score.precisions],
                "length_ratio": round(score.sys_len / score.ref_len, 3), "brevity_penalty": round(score.bp, 3)}

    sizes: dict[int, list[int]] = {}
    for index, (prompt, _) in enumerate(examples):
        sizes.setdefault(prompt.count("["), []).append(index)
    return {"run": str(run), "all": stats(list(range(len(examples)))),
            "by_attributes": {size: stats(sizes[size]) for size in sorted(sizes)},
            "generations": [{"prompt": p, "generated": g} for (p, _), g in zip(examples, outputs)]}


def coverage(run: Path) -> dict:
    """How often a run's test generations (from its `by-size` result) name each attribute value verbatim, for values
    the training split has and values it lacks (E2E's development set has one eatType and two foods)."""
    import re

    from edgeft.recipe import load_recipe
    from edgeft.tasks import get_task

    recipe = load_recipe(RECIPE)
    splits = get_task("causal-lm").load_splits(recipe.data, recipe.training.seed)
    slot = re.compile(r"(\w[\w ]*)\[([^\]]*)\]")
    trained = {pair for prompt in set(splits.train["prompt"]) for pair in slot.findall(prompt)}
    generations = json.loads((RESULTS / f"e2e_smollm2_by-size_{run.name}.json").read_text())["generations"]
    counts: dict[str, dict[str, list[int]]] = {}
    for row in generations:
        for attribute, value in slot.findall(row["prompt"]):
            if attribute == "familyFriendly":  # yes/no: never written as such
                continue
            seen = "seen in training" if (attribute, value) in trained else "unseen in training"
            named = counts.setdefault(attribute, {}).setdefault(seen, [0, 0])
            named[0] += value.lower() in row["generated"].lower()
            named[1] += 1
    return {"run": str(run), "named_verbatim": {a: {k: f"{n}/{total}" for k, (n, total) in v.items()}
                                                for a, v in counts.items()},
            "pub_called_restaurant": sum("eatType[pub]" in r["prompt"] and "pub" not in r["generated"].lower()
                                         and "restaurant" in r["generated"].lower() for r in generations),
            "pub_mrs": sum("eatType[pub]" in r["prompt"] for r in generations)}


def significance(baseline: Path) -> dict:
    """Every run with a `by-size` result, its test BLEU against the baseline run's (default: the shipped recipe's):
    sacrebleu's paired bootstrap over the 630 test MRs (1,000 resamples), giving each run's 95% confidence interval
    and the p-value of its difference from the baseline. The interval is the test set's sampling noise for these
    generations only: a retrained model (another seed or machine) varies beyond it."""
    import sacrebleu
    from sacrebleu.significance import PairedTest

    from edgeft.metrics import reference_streams

    _, examples = test_examples(None)
    runs = {}
    for path in sorted(RESULTS.glob("e2e_smollm2_by-size_*.json")):
        result = json.loads(path.read_text())
        if [row["prompt"] for row in result["generations"]] != [prompt for prompt, _ in examples]:
            raise SystemExit(f"{path.name}: its generations are not for the 630 test MRs in file order")
        runs[Path(result["run"]).name] = [row["generated"] for row in result["generations"]]
    if baseline.name not in runs:
        raise SystemExit(f"no by-size result for {baseline.name}: run `python -m benchmarks.e2e_smollm2 by-size "
                         f"{baseline}` first")
    named = [(baseline.name, runs.pop(baseline.name)), *sorted(runs.items())]
    _, scores = PairedTest(named, {"BLEU": sacrebleu.metrics.BLEU()}, reference_streams([r for _, r in examples]),
                           test_type="bs", n_samples=1000)()
    return {"baseline": baseline.name, "test": "sacrebleu paired bootstrap, 1,000 resamples of the 630 test MRs",
            "ci95": "sacrebleu's: bootstrap mean +- half the width between the 2.5 and 97.5 percentiles",
            "runs": {name: {"bleu": round(r.score, 2), "bootstrap_mean": round(r.mean, 2),
                            "ci95": [round(r.mean - r.ci, 2), round(r.mean + r.ci, 2)],
                            "p_value_vs_baseline": r.p_value}
                     for name, r in zip(scores["System"], scores["BLEU"])}}


def checkpoints(run: Path, kept: Path) -> dict:
    """Each checkpoint of a run copied out of its staging folder while it trained (`DIR/checkpoint-STEP/`, the LoRA
    adapter and trainer_state.json; the Trainer itself keeps only the best and the last): its validation loss, and
    the validation and test BLEU of its merged model's greedy generations at the run's prompt and length. It shows
    how far the checkpoint choice moves BLEU, and which checkpoint each `training.checkpoint_metric` keeps."""
    import copy

    from peft import PeftModel

    context = _scoring_context(run)
    rows = {}
    for folder in sorted(kept.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[-1])):
        step = int(folder.name.split("-")[-1])
        history = json.loads((folder / "trainer_state.json").read_text())["log_history"]
        # The last step's checkpoint is saved without an evaluation unless it falls on eval_steps.
        row = {"step": step, "validation_loss": next((entry["eval_loss"] for entry in history
                                                      if entry.get("step") == step and "eval_loss" in entry), None)}
        model = PeftModel.from_pretrained(copy.deepcopy(context["base"]), folder).merge_and_unload().eval()
        rows[folder.name] = {**row, **_scored(model, context)}
        print(f"{folder.name}: validation loss {row['validation_loss']}, BLEU validation "
              f"{rows[folder.name]['validation']['bleu']} test {rows[folder.name]['test']['bleu']}", flush=True)
    evaluated = {name: row for name, row in rows.items() if row["validation_loss"] is not None}
    return {"run": str(run),
            "chosen_by_validation_loss": min(evaluated, key=lambda name: evaluated[name]["validation_loss"]),
            "chosen_by_validation_bleu": _kept_by_bleu(evaluated, context["recipe"].training.early_stopping_patience),
            "chosen_by": "as the Trainer chooses: the first best value; on validation BLEU (training."
                         "checkpoint_metric: bleu) only among the evaluations before early stopping would end the run",
            "summary": {name: {"validation_loss": None if row["validation_loss"] is None
                               else round(row["validation_loss"], 4),
                               "validation_bleu": row["validation"]["bleu"], "test_bleu": row["test"]["bleu"]}
                        for name, row in rows.items()},
            "checkpoints": rows}


def average(run: Path, kept: Path, counts: list[int]) -> dict:
    """What `training.average_checkpoints: N` would have kept, for each N: the mean of the last N checkpoints copied
    out while the run trained (`DIR/checkpoint-STEP/`, as for `checkpoints`), combined by the library's own function;
    its validation perplexity (token-weighted), and the validation and test BLEU of its greedy generations."""
    import copy
    import tempfile

    from peft import PeftModel

    from edgeft.atomic import complete_checkpoints
    from edgeft.training import average_last_checkpoints

    context = _scoring_context(run)
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "checkpoints").symlink_to(kept.resolve())  # the layout the function reads
        for count in counts:
            last = complete_checkpoints(Path(folder))[-1]  # any of them: its adapter is replaced by the mean
            model = PeftModel.from_pretrained(copy.deepcopy(context["base"]), last)
            names = average_last_checkpoints(model, Path(folder), count)
            model = model.merge_and_unload().eval()
            row = {"checkpoints": names, "validation_perplexity": _validation_perplexity(model, context)}
            rows[f"last {count}"] = {**row, **_scored(model, context)}
            print(f"last {count} ({', '.join(names)}): validation perplexity {row['validation_perplexity']}, BLEU "
                  f"validation {rows[f'last {count}']['validation']['bleu']} test "
                  f"{rows[f'last {count}']['test']['bleu']}", flush=True)
    return {"run": str(run),
            "summary": {name: {"validation_perplexity": row["validation_perplexity"],
                               "validation_bleu": row["validation"]["bleu"], "test_bleu": row["test"]["bleu"]}
                        for name, row in rows.items()},
            "averages": rows}


def soup(run: Path, others: list[Path]) -> dict:
    """Model soups of independent trainings of one recipe on the same validation rows: for every subset of two or
    more runs, the mean of their LoRA updates (the library's exact average), its validation perplexity and validation
    and test BLEU; and the greedy soup (Wortsman et al., 2022) chosen on validation BLEU alone: runs in order of their
    own validation BLEU, each added only if the soup's validation BLEU does not fall."""
    import copy
    import itertools

    from peft import PeftModel

    from edgeft.training import average_weights

    runs = [run, *others]
    if len({path.name for path in runs}) < len(runs):
        raise SystemExit("soup: the runs need distinct folder names (they name the soups)")
    own = {str(path): json.loads((path / "metrics.json").read_text())["validation"]["bleu"] for path in runs}
    context = _scoring_context(run)
    rows = {}
    for size in range(2, len(runs) + 1):
        for members in itertools.combinations(runs, size):
            model = PeftModel.from_pretrained(copy.deepcopy(context["base"]), members[0] / "adapter")
            average_weights(model, [path / "adapter" for path in members])
            model = model.merge_and_unload().eval()
            name = " + ".join(path.name for path in members)
            rows[name] = {"runs": [str(path) for path in members],
                          "validation_perplexity": _validation_perplexity(model, context), **_scored(model, context)}
            print(f"{name}: validation perplexity {rows[name]['validation_perplexity']}, BLEU validation "
                  f"{rows[name]['validation']['bleu']} test {rows[name]['test']['bleu']}", flush=True)
    ordered = sorted(runs, key=lambda path: -own[str(path)])
    greedy, best = [ordered[0]], own[str(ordered[0])]
    for path in ordered[1:]:
        candidate = rows[" + ".join(member.name for member in runs if member in [*greedy, path])]
        if candidate["validation"]["bleu"] >= best:
            greedy, best = [*greedy, path], candidate["validation"]["bleu"]
    return {"run": str(run), "own_validation_bleu": own,
            "greedy_soup": {"runs": [str(path) for path in greedy], "validation_bleu": best},
            "summary": {name: {"validation_perplexity": row["validation_perplexity"],
                               "validation_bleu": row["validation"]["bleu"], "test_bleu": row["test"]["bleu"]}
                        for name, row in rows.items()},
            "soups": rows}


def _scoring_context(run: Path) -> dict:
    """What scoring a run's variants needs: its recipe, splits, tokenizer, prompt format and untuned base model."""
    from edgeft.decoders import load_decoder, load_decoder_tokenizer, resolve_decoder
    from edgeft.export.source import RECIPE_LOCK, read_lock
    from edgeft.tasks import get_task

    recipe = read_lock(run / RECIPE_LOCK)
    task = get_task("causal-lm")
    return {"recipe": recipe, "task": task, "splits": task.load_splits(recipe.data, recipe.training.seed),
            "settings": json.loads((run / "merged" / "generation.json").read_text()),
            "tokenizer": load_decoder_tokenizer(run / "merged"),
            "base": load_decoder(resolve_decoder(recipe.model.name))}


def _validation_perplexity(model, context: dict) -> float:
    """A merged model's token-weighted perplexity on the run's validation rows."""
    from edgeft.tasks.causal_lm import perplexity

    rows = context["task"].tokenize(context["splits"].validation, context["tokenizer"],
                                    context["recipe"].data.max_length, context["settings"]["prompt_format"])
    return perplexity(model, rows, context["task"].collator(context["tokenizer"]))


def _scored(model, context: dict) -> dict:
    """Validation and test BLEU / ROUGE-L of a merged model's greedy generations at the run's prompt and length, and
    its test generations."""
    from edgeft.tasks.causal_lm import greedy_scores

    row = {}
    for name in ("validation", "test"):
        started = time.perf_counter()
        scores, outputs = greedy_scores(model, context["tokenizer"],
                                        context["task"].examples(getattr(context["splits"], name)),
                                        context["settings"]["prompt_format"], context["settings"]["max_new_tokens"])
        row[name] = {key: scores[key] for key in ("bleu", "rouge_l", "n")}
        row[name]["seconds"] = round(time.perf_counter() - started, 1)
    row["test_generations"] = outputs
    return row


def _kept_by_bleu(rows: dict, patience: int | None) -> str:
    """The checkpoint `training.checkpoint_metric: bleu` would keep: the first highest validation BLEU among the
    evaluations before early stopping would have ended the run."""
    best, waited = None, 0
    for name, row in rows.items():
        if best is None or row["validation"]["bleu"] > rows[best]["validation"]["bleu"]:
            best, waited = name, 0
        else:
            waited += 1
            if patience and waited >= patience:
                break
    return best


def bundles(run: Path, prompts: int | None, threads: int) -> dict:
    """Every bundle of a run: BLEU and ROUGE-L in its own runtime on the same MRs, size, verification. Speeds come
    from `edgeft bench` (interleaved fresh processes), run separately under the measurement lock."""
    from edgeft.runtime.generate import load_generator
    from edgeft.tasks import get_task

    recipe, examples = test_examples(prompts)
    max_new_tokens = recipe.generation.max_new_tokens if recipe.generation else 64
    rows = []
    for folder in sorted(path for path in (run / "bundles").iterdir() if (path / "manifest.json").is_file()):
        generator = load_generator(folder, threads=threads)
        scores = get_task("causal-lm").evaluate_predictor(generator, examples, max_new_tokens)
        manifest = json.loads((folder / "manifest.json").read_text())
        size = sum(entry["bytes"] for name, entry in manifest["files"].items() if name != "tokenizer.json")
        rows.append({"bundle": folder.name, **scores, "model_mb": round(size / 2**20, 1),
                     "verification": {k: manifest["verification"][k] for k in ("teacher_forced", "greedy")}})
        print(json.dumps({k: rows[-1][k] for k in ("bundle", "bleu", "rouge_l", "model_mb", "seconds")}))
    return {"run": str(run), "threads": threads, "rows": rows}


def export_base(run: Path, formats: list[str], verify: int) -> dict:
    """Bundles of the untuned base model (no run folder: `export_decoder` on its HF folder), verified against
    PyTorch on the recipe's first `verify` test prompts with their first reference; into RUN/bundles/."""
    from edgeft.decoders import load_decoder_tokenizer, resolve_decoder
    from edgeft.export.decoder import CONTEXT_LIMIT, export_decoder
    from edgeft.export.decoder_tflite import cache_length
    from edgeft.tasks.causal_lm import build_prompt_format, generation_spec

    recipe, examples = test_examples(verify)
    source = resolve_decoder(recipe.model.name)
    spec = generation_spec(recipe)
    prompt_format = build_prompt_format(load_decoder_tokenizer(source), spec)
    rows = []
    for item in formats:
        format, precision = item.split("-", 1)
        started = time.perf_counter()
        bundle = export_decoder(source, format, precision, run / "bundles" / item,
                                examples=[(prompt, refs[0]) for prompt, refs in examples],
                                prompt_format=prompt_format, context_length=CONTEXT_LIMIT, min_agreement=0.5,
                                scoring_tokens=spec.max_new_tokens,
                                cache_tokens=cache_length(recipe.data.max_length, spec.max_new_tokens, CONTEXT_LIMIT))
        manifest = json.loads((bundle / "manifest.json").read_text())
        rows.append({"bundle": item, "seconds": round(time.perf_counter() - started, 1),
                     "verification": manifest["verification"]})
        print(json.dumps(rows[-1]))
    return {"model": str(source), "rows": rows}


def step_cost(steps: int, batch_size: int | None, precision: str) -> dict:
    """Wall and process CPU seconds per LoRA training step on real rows of the recipe (its batch size and
    max_length, rows of similar length together as `group_by_length` batches them), in fp32 or under bf16
    autocast as the Trainer's `bf16` runs it. CPU seconds per step do not grow when other jobs share the cores;
    wall seconds do."""
    import contextlib
    import resource

    import torch

    from edgeft.decoders import load_decoder, load_decoder_tokenizer, resolve_decoder
    from edgeft.methods import apply_method
    from edgeft.recipe import load_recipe
    from edgeft.tasks import get_task
    from edgeft.tasks.causal_lm import build_prompt_format, generation_spec
    recipe = load_recipe(RECIPE)
    task = get_task("causal-lm")
    batch_size = batch_size or recipe.training.batch_size
    splits = task.load_splits(recipe.data, recipe.training.seed)
    source = resolve_decoder(recipe.model.name)
    tokenizer = load_decoder_tokenizer(source)
    prompt_format = build_prompt_format(tokenizer, generation_spec(recipe))
    rows = task.tokenize(splits.train.select(range(batch_size * steps)), tokenizer, recipe.data.max_length,
                         prompt_format)
    model = apply_method(load_decoder(source), recipe.method)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    collator = task.collator(tokenizer)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    timings = []
    for step in range(steps):
        batch = collator([rows[i] for i in order[step * batch_size:(step + 1) * batch_size]])
        cpu0, wall0 = _cpu_seconds(resource), time.perf_counter()
        with (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        timings.append({"wall_s": time.perf_counter() - wall0, "cpu_s": _cpu_seconds(resource) - cpu0,
                        "tokens": int(batch["attention_mask"].sum()), "padded": int(batch["input_ids"].numel())})
    with open("/proc/loadavg") as handle:
        load = handle.read().split()[:3]
    return {"precision": precision, "batch_size": batch_size, "max_length": recipe.data.max_length,
            "torch_threads": torch.get_num_threads(), "steps": timings, "loadavg_after": load,
            "mean_wall_s": sum(t["wall_s"] for t in timings) / steps,
            "mean_cpu_s": sum(t["cpu_s"] for t in timings) / steps}


def precision_speed(rounds: int, steps: int, batch_size: int | None) -> dict:
    """fp32 against bf16 autocast training steps: `rounds` interleaved pairs of fresh processes (the order
    alternates), the same rows in each; the first step of a process is warm-up and left out. Speed-up = fp32's
    median wall seconds per step over bf16's, with a bootstrap interval over paired rounds."""
    from edgeft.bench.stats import percentile_ci, ratio_ci

    samples: dict[str, list[list[float]]] = {"fp32": [], "bf16": []}
    raw = []
    for index in range(rounds):
        for precision in ("fp32", "bf16") if index % 2 == 0 else ("bf16", "fp32"):
            command = [sys.executable, "-m", "benchmarks.e2e_smollm2", "step", "--steps", str(steps),
                       "--precision", precision, "--print-json"]
            command += ["--batch-size", str(batch_size)] if batch_size else []
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            samples[precision].append([t["wall_s"] for t in result["steps"][1:]])
            raw.append({"round": index, **result})
            print(f"round {index} {precision}: {result['mean_wall_s']:.2f} s/step", flush=True)
    return {"rounds": rounds, "steps_timed": steps - 1,
            "median_s_per_step": {k: percentile_ci(v, 50) for k, v in samples.items()},
            "bf16_speedup": ratio_ci(samples["fp32"], samples["bf16"]), "raw": raw}


def _cpu_seconds(resource) -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.e2e_smollm2")
    parser.add_argument("mode", choices=["base", "bundles", "by-size", "coverage", "significance", "checkpoints",
                                         "average", "soup", "step", "precision", "export-base"])
    parser.add_argument("run", nargs="?", type=Path)
    parser.add_argument("--prompts", type=int, default=None, help="first N distinct test MRs (default: all 630)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kept", type=Path, help="checkpoints, average: the folder of checkpoint-STEP/ copies")
    parser.add_argument("--counts", type=int, nargs="+", default=[2, 3, 4], help="average: how many last checkpoints")
    parser.add_argument("--with", dest="others", type=Path, nargs="+", default=[],
                        help="soup: the other trainings of RUN_DIR's recipe")
    parser.add_argument("--formats", default="onnx-fp32,onnx-int4", help="export-base: FORMAT-PRECISION,...")
    parser.add_argument("--chat-template", action="store_true", help="base: the recipe's prompt in the chat format")
    parser.add_argument("--steps", type=int, default=3, help="step: training steps to time")
    parser.add_argument("--batch-size", type=int, default=None, help="step: rows per step (default: the recipe's)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="step: fp32 or bf16 autocast")
    parser.add_argument("--rounds", type=int, default=3, help="precision: interleaved fp32/bf16 process pairs")
    parser.add_argument("--print-json", action="store_true", help="step: print the result, write no file")
    args = parser.parse_args(argv)
    if args.mode == "step":
        result = step_cost(args.steps, args.batch_size, args.precision)
        if args.print_json:
            print(json.dumps(result))
            return 0
    elif args.mode == "precision":
        result = precision_speed(args.rounds, args.steps, args.batch_size)
    elif args.mode == "export-base":
        result = export_base(args.run, args.formats.split(","), args.prompts or 16)
    elif args.mode == "coverage":
        result = coverage(args.run)
    elif args.mode == "significance":
        result = significance(args.run or Path("runs/e2e-smollm2-lora"))
    elif args.mode == "checkpoints":
        result = checkpoints(args.run, args.kept)
    elif args.mode == "average":
        result = average(args.run, args.kept, args.counts)
    elif args.mode == "soup":
        result = soup(args.run, args.others)
    elif args.mode == "by-size":
        result = by_size(args.run, args.prompts)
    elif args.mode == "base":
        result = base(args.prompts, args.chat_template)
    else:
        result = bundles(args.run, args.prompts, args.threads)
    result = {"command": "python -m benchmarks.e2e_smollm2 " + " ".join(argv), "prompts": args.prompts, **result}
    RESULTS.mkdir(exist_ok=True)
    suffix = ("_" + args.run.name if args.run else "") + ("_chat" if args.chat_template else "")
    out = RESULTS / f"e2e_smollm2_{args.mode}{suffix}.json"
    out.write_text(json.dumps(result, indent=2))
    shown = ("bleu", "rouge_l", "n", "seconds", "mean_wall_s", "mean_cpu_s", "loadavg_after", "bf16_speedup", "all",
             "by_attributes", "named_verbatim", "runs", "summary", "greedy_soup")
    print(json.dumps({k: v for k, v in result.items() if k in shown}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
