"""The search: an Optuna multi-objective study over the pass settings (maximise the task metric on validation,
minimise p50 latency on the target), with the costly pass run only for promising students.

A trial samples every pass's settings, runs the chain through the cached engine, exports, scores the bundle on the
validation split in its own runtime and measures its latency for the target. Before a costly pass (distillation)
that is not cached yet, the student is scored quickly (PyTorch, a slice of validation) and its cost counted
(non-embedding parameters, which latency follows); it goes on only when
- it ranks in the best 1/`halving_rate` of the students scored so far by non-dominated sorting on (score, cost,
  size on disk):
  successive halving with a Pareto ranking (Schmucker et al. 2021, MO-ASHA), so fast-but-rough students compete with
  slow-but-accurate ones instead of losing to them on accuracy alone;
- no student smaller in compute and on disk has already matched the tuned model on validation;
- the pass, at the speed seen so far, would finish within the time budget.
A stopped trial is PRUNED with the reason in its `stopped` attribute. A freshly built student is queued for every
other format x precision of the target (cheap: only export and measure), and a trial that repeats finished settings
reuses their result. Once `search.patience` trials in a row only repeat what was tried, sampling turns random;
when that too only repeats, the search stops early.

The study lives in an Optuna storage (a journal file by default), so `--workers N`, other processes and machines
pointed at the same storage share one search, and `--resume` continues a killed one.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path

import optuna

from edgeft.compress import engine, scoring
from edgeft.compress import export as export_pass
from edgeft.compress.candidate import Candidate, Latency
from edgeft.compress.config import CompressConfig
from edgeft.compress.passes import LAST, PASSES, PassContext
from edgeft.compress.select import within_drop
from edgeft.errors import EdgeftError

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
# Why a trial stopped before its costly pass (the `stopped` attribute); the first two may be promoted later.
SCREENING = "screening: the first students are scored before any is distilled"
HALVING = "successive halving: not among the most promising students"
MATCHED = "a no larger student is already within the metric drop"
OVERRUN = "would overrun the time budget"
FAILED = "failed"  # a pass or the measurement raised: `failed: <message>`; its settings are not tried again
POLL_SECONDS = 5.0
RUN_SECONDS = "run_seconds:"  # study attribute prefix: one per run of the study


@dataclass(frozen=True)
class SearchSetup:
    """Everything a worker process needs to join the search (picklable)."""

    run_dir: Path
    target: str
    config: CompressConfig
    storage: str
    study_name: str
    cache: Path
    deadline: float | None
    remote: str | None = None


def open_study(setup: SearchSetup, worker: int = 0) -> optuna.Study:
    """The shared study: two objectives, TPE with constant liar (parallel workers do not sample the same point)."""
    sampler = optuna.samplers.TPESampler(seed=setup.config.search.seed + worker, multivariate=True,
                                         constant_liar=True)
    return optuna.create_study(storage=storage_of(setup.storage), study_name=setup.study_name, sampler=sampler,
                               directions=["maximize", "minimize"], load_if_exists=True)


def storage_of(spec: str):
    """An RDB URL as it is; anything else is a journal file path."""
    if "://" in spec:
        return spec
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    Path(spec).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(spec)))


class Search:
    """One process's view of the search: the data, the profile, the passes' context and the objective."""

    def __init__(self, setup: SearchSetup):
        from edgeft.devices import HOST, load_profile
        from edgeft.export.source import read_lock, resolve
        from edgeft.tasks import get_task

        self.setup, self.config = setup, setup.config
        source = resolve(setup.run_dir)
        recipe = read_lock(source.recipe)
        self.task = get_task(recipe.model.task)
        self.metric = self.task.metric
        self.splits = self.task.load_splits(recipe.data, recipe.training.seed)
        self.profile = export_pass.for_task(load_profile(setup.target), self.config.export, self.task)
        # The metric drop in the metric's units: 0.01 of its full scale is one point (of accuracy, or of BLEU).
        self.max_drop = self.config.max_metric_drop * self.task.metric_scale
        if self.task.generates and (self.profile.name != HOST or self.profile.ssh or setup.remote):
            raise EdgeftError(f"--target {setup.target}: a generating model's speed is measured on this host only "
                              "(no estimate or remote timing per decoded token yet); use --target host")
        self.teacher_dir, self.teacher_key = source.model_dir, engine.model_key(source.model_dir)
        # The task says which passes apply (e.g. no vocabulary pruning where it is not exact); export always does.
        self.passes = [name for name in self.config.passes if name in self.task.passes or name == LAST]
        validation = self.splits.validation
        self.validation = self.task.examples(validation, self.splits.labels)
        self.quick = validation.select(range(min(self.config.search.quick_rows, len(validation))))
        self.bench_texts = [self.task.example_text(e) for e in self.validation[: self.config.bench.texts]]
        train = self.splits.train.shuffle(seed=recipe.training.seed)
        calibration = [self.task.example_text(e)
                       for e in self.task.examples(train.select(range(min(300, len(train)))), self.splits.labels)]
        self.context = PassContext(self.teacher_dir, self.splits, self.validation, calibration)
        self.export_choices = self.config.export.choices(self.profile)
        self.reference = float("inf")  # the tuned model's validation metric, read from the study once it exists
        costly = any(PASSES[name].COSTLY for name in self.passes)
        self.prior_rate = _tuning_rate(source.run_dir, self.teacher_dir) if costly else None

    # --- the objective -------------------------------------------------------------------------------------------
    def objective(self, trial: optuna.Trial) -> tuple[float, float]:
        trial.set_user_attr("worker", os.getpid())
        configs: dict = {}
        for name in self.passes:
            configs[name] = self.config.space(name).sample(trial, configs, self.profile)
        twin = self._finished_twin(trial)
        if twin is not None:
            trial.set_user_attr("candidate", {**twin.user_attrs["candidate"], "trial": trial.number})
            trial.set_user_attr("reused", twin.number)
            return tuple(twin.values)
        failed = self._failed_twin(trial)
        if failed is not None:  # a deterministic failure (an export that does not verify) would repeat
            trial.set_user_attr("stopped", failed.user_attrs["stopped"])
            raise optuna.TrialPruned(f"trial {failed.number} {failed.user_attrs['stopped']}")
        try:
            return self._run_chain(trial, configs)
        except optuna.TrialPruned:
            raise
        except Exception as error:  # noqa: BLE001 - recorded on the trial, shown in the report
            message = " ".join(str(error).split())[:300] or type(error).__name__
            trial.set_user_attr("stopped", f"{FAILED}: {message}")
            raise optuna.TrialPruned(message) from error

    def _run_chain(self, trial: optuna.Trial, configs: dict) -> tuple[float, float]:
        key, folder, chain = self.teacher_key, self.teacher_dir, []
        for name, config in configs.items():
            if config is None:
                continue
            costly = PASSES[name].COSTLY and engine.cached(self.setup.cache, key, name, config) is None
            if costly:
                self._gate(trial, key, folder, config)
            key, folder, seconds = engine.apply(name, folder, key, config, self.setup.cache, self.context)
            if costly:
                trial.set_user_attr("costly", {"seconds": seconds})
                self._queue_other_targets(trial)
            chain.append(describe(name, config))
        candidate = self._measure(trial.number, folder, configs[LAST], tuple(chain), dict(trial.params))
        trial.set_user_attr("candidate", candidate.to_json())
        return candidate.validation[self.metric], candidate.latency.p50_ms

    def _measure(self, number: int, bundle: Path, export, chain: tuple, settings: dict) -> Candidate:
        from edgeft.bench import bench

        quality = scoring.bundle_metrics(bundle, self.validation, threads=self.profile.threads)
        spec = self.config.bench
        if self.task.generates:
            report = token_latencies([bundle], self, rounds=1)[str(bundle)]
        else:
            report = bench(bundle, self.profile, runs=spec.runs, warmup=spec.warmup, texts=self.bench_texts,
                           remote=self.setup.remote)
        latency = Latency(report["p50_ms"], report["p90_ms"], report["source"],
                          tuple(report.get("samples_ms") or ()))
        return Candidate(number, chain, settings, bundle, export.format, export.precision, quality, latency,
                         int(report.get("model_bytes") or 0), report.get("peak_rss_mb"))

    # --- cheap stages first --------------------------------------------------------------------------------------
    def _gate(self, trial: optuna.Trial, key: str, folder: Path, config) -> None:
        """Score the student before the costly pass; stop the trial (PRUNED) when the pass would not pay now."""
        trials = trial.study.get_trials(deepcopy=False)
        known = _students(trials, self.setup.cache)
        student = known.get(key) or {
            "key": key, "score": scoring.model_metrics(self.task, folder, self.quick, self.splits.labels)[self.metric],
            "cost": _cost(folder), "size": _size(folder)}
        record = {**student, "work": float(getattr(config, "epochs", 1)) * student["cost"]}
        trial.set_user_attr("gate", record)
        known[key] = record
        stop = self._stop(record, known, trials)
        if stop:
            reason, detail = stop
            trial.set_user_attr("stopped", reason)
            trial.set_user_attr("stopped_detail", detail)
            raise optuna.TrialPruned(f"{reason}: {detail}")

    def _stop(self, record: dict, known: dict, trials) -> tuple[str, str] | None:
        """Why the costly pass should not run for this student now, or None."""
        rate = self.config.search.halving_rate
        if len(known) < rate:
            return SCREENING, f"{len(known)} of the first {rate} students scored; the most promising go on"
        return (_not_promoted(record, list(known.values()), rate) or self._matched_by_smaller(record, trials)
                or self._overruns(record, trials))

    def _matched_by_smaller(self, record: dict, trials) -> tuple[str, str] | None:
        # With the latency objective a student comfortably within the drop is enough; otherwise only matching the
        # tuned model.
        # "No larger" in compute and in file size: a student as fast but smaller on disk (fewer vocabulary rows)
        # can still improve what ships.
        drop = self.max_drop * self.config.search.match_fraction if self.config.objective == "latency" else 0.0
        known = _students(trials, self.setup.cache)
        for other in trials:
            gate, candidate = other.user_attrs.get("gate"), other.user_attrs.get("candidate")
            if gate and candidate and gate["key"] != record["key"] and gate["cost"] <= record["cost"] \
                    and known[gate["key"]]["size"] <= record["size"] \
                    and within_drop(candidate["validation"][self.metric], self.reference, drop):
                return MATCHED, f"trial {other.number}"
        return None

    def _overruns(self, record: dict, trials) -> tuple[str, str] | None:
        if self.setup.deadline is None:
            return None
        rates = [t.user_attrs["costly"]["seconds"] / t.user_attrs["gate"]["work"]
                 for t in trials if t.user_attrs.get("costly", {}).get("seconds") and "gate" in t.user_attrs]
        rates = rates or ([self.prior_rate] if self.prior_rate else [])
        if not rates:
            return None
        estimate = max(rates) * record["work"]
        left = self.setup.deadline - time.time()
        if estimate > left:
            return OVERRUN, f"~{estimate / 60:.0f} min needed, {left / 60:.0f} min left"
        return None

    def promote_waiting(self, study: optuna.Study, _trial=None) -> None:
        """After each trial: queue the students that now deserve the costly pass, smallest first (ASHA promotes
        waiting configurations before it samples new ones)."""
        trials = study.get_trials(deepcopy=False)
        known = _students(trials, self.setup.cache)
        started = {t.user_attrs["gate"]["key"] for t in trials if "gate" in t.user_attrs
                   and (t.state != optuna.trial.TrialState.PRUNED or "promoted" in t.user_attrs)}
        started |= {trials[t.user_attrs["promoted"]].user_attrs["gate"]["key"] for t in trials
                    if t.state == optuna.trial.TrialState.WAITING and "promoted" in t.user_attrs}
        waiting = [t for t in trials if t.user_attrs.get("stopped") in (SCREENING, HALVING)]
        queued = set()
        for trial in sorted(waiting, key=lambda t: t.user_attrs["gate"]["cost"]):
            record = known[trial.user_attrs["gate"]["key"]]
            if record["key"] in started | queued:
                continue
            queued.add(record["key"])  # decided once per student: a long search has many trials per student
            if self._stop(record, known, trials):
                continue
            study.enqueue_trial(trial.params, user_attrs={"promoted": trial.number})

    def _finished_twin(self, trial: optuna.Trial):
        for other in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if other.params == trial.params and "candidate" in other.user_attrs:
                return other
        return None

    def _failed_twin(self, trial: optuna.Trial):
        for other in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,)):
            if other.params == trial.params and str(other.user_attrs.get("stopped", "")).startswith(FAILED):
                return other
        return None

    def _queue_other_targets(self, trial: optuna.Trial) -> None:
        """The costly student is built: measure it in every other format x precision of the target too."""
        seen = [t.params for t in trial.study.get_trials(deepcopy=False)]
        for choice in self.export_choices:
            params = {**trial.params, LAST: choice}
            if params not in seen:
                trial.study.enqueue_trial(params, skip_if_exists=True)


def token_latencies(bundles: list[Path], search: Search, rounds: int) -> dict[str, dict]:
    """A generating model's latency: milliseconds per decoded token, timed on this host with a real validation
    prompt, for the recipe's generation length."""
    import json

    from edgeft.bench.generation import token_latency
    from edgeft.decoders import GENERATION_FILE

    settings = json.loads((search.teacher_dir / GENERATION_FILE).read_text())
    return token_latency(bundles, search.profile.threads, search.bench_texts[0], settings["max_new_tokens"],
                         rounds=rounds)


def _cost(folder: Path) -> int:
    """Non-embedding parameters: what batch-1 latency of an encoder follows (the embeddings are a lookup)."""
    from edgeft.models import load_classifier

    model = load_classifier(folder)
    embeddings = sum(p.numel() for p in model.encoder.get_input_embeddings().parameters())
    return sum(p.numel() for p in model.parameters()) - embeddings


def _size(folder: Path) -> int:
    """Bytes of the weight files: what the shipped file follows (embeddings included)."""
    return sum(path.stat().st_size for path in Path(folder).glob("*.safetensors"))


def _tuning_rate(run_dir: Path, teacher_dir: Path) -> float | None:
    """Seconds per epoch per non-embedding parameter of the run's own tuning (metrics.json), a prior for the first
    costly pass's duration: a distillation epoch costs about a fine-tuning epoch of the same model size."""
    import json

    metrics = Path(run_dir) / "metrics.json"
    train = json.loads(metrics.read_text()).get("train", {}) if metrics.is_file() else {}
    if not train.get("seconds") or not train.get("epochs"):
        return None
    return train["seconds"] / train["epochs"] / _cost(teacher_dir)


def _students(trials, cache: Path) -> dict[str, dict]:
    """The scored students by key (score, cost and size), from the trials' `gate` attributes; a study made before
    sizes were recorded gets them from the cached student folders."""
    students = {t.user_attrs["gate"]["key"]: t.user_attrs["gate"] for t in trials if "gate" in t.user_attrs}
    for key, record in students.items():
        if "size" not in record:
            folders = list(Path(cache).glob(f"*-{key}"))
            students[key] = {**record, "size": _size(folders[0]) if folders else 0}
    return students


def _not_promoted(record: dict, records: list[dict], rate: int) -> tuple[str, str] | None:
    """MO successive halving: promote the best ceil(n / rate) students by non-dominated rank (then score)."""
    ranks = _pareto_ranks([(r["score"], -r["cost"], -r.get("size", 0)) for r in records])
    order = sorted(range(len(records)), key=lambda i: (ranks[i], -records[i]["score"]))
    best = {records[i]["key"] for i in order[: math.ceil(len(records) / rate)]}
    mine = next(i for i, r in enumerate(records) if r["key"] == record["key"])
    if record["key"] in best or ranks[mine] == 0:
        return None
    return (HALVING, f"ranks {order.index(mine) + 1}/{len(records)} on (quick score, compute, size on disk); "
                     f"the best {len(best)} "
            "and the front go on")


def _pareto_ranks(points: list[tuple[float, ...]]) -> list[int]:
    """Non-dominated sorting (every coordinate maximised): 0 for the front, 1 for the next, ..."""
    ranks = [-1] * len(points)
    remaining, rank = set(range(len(points))), 0
    while remaining:
        front = {i for i in remaining if not any(
            all(a >= b for a, b in zip(points[j], points[i])) and points[j] != points[i] for j in remaining)}
        for i in front:
            ranks[i] = rank
        remaining -= front
        rank += 1
    return ranks


def describe(name: str, config) -> str:
    """A pass and its settings in one short token for chains and reports."""
    if name == LAST:
        return f"{config.format}-{config.precision}"
    if name == "prune":
        fields = config.model_dump(include={"heads", "ffn", "layers"})
        return "prune(" + ",".join(f"{key}={value:g}" for key, value in fields.items() if value) + ")"
    if name == "distill":
        return f"distill(epochs={config.epochs:g})"
    return name


def baseline_params(config: CompressConfig, passes: list[str], choices: list[str]) -> list[dict]:
    """One trial per export target with every optional pass off: the tuned model as the target runs it."""
    off = {}
    for name in passes:
        off.update(getattr(config.space(name), "off", lambda: {})())
    return [{**off, LAST: choice} for choice in choices]


# --- running -------------------------------------------------------------------------------------------------------
def run_search(setup: SearchSetup, progress, resume: bool) -> tuple[optuna.Study, Search]:
    """Create or continue the study, run the workers until the trial count or the deadline; the study and this
    process's Search (its data and profile) for the selection."""
    search = Search(setup)
    study = open_study(setup)
    # What the trials depend on; stopping rules, workers and the selection's budgets may change on --resume.
    space = setup.config.model_dump(mode="json", exclude={"search": {"trials", "time_budget", "workers", "storage",
                                                                     "patience", "match_fraction"},
                                                          "budget_ms": True, "memory_mb": True, "size_mb": True,
                                                          "bench": True})
    if study.user_attrs.get("space", space) != space:
        raise EdgeftError(f"{setup.storage}: study {setup.study_name} was made with other compress settings; run "
                          "without --resume to start over, or give another --storage")
    study.set_user_attr("space", space)
    study.set_user_attr("converged", None)  # a resumed study that stopped early gets to try again
    if resume:
        stale_to_failed(study)
    if "reference" not in study.user_attrs:
        metrics = scoring.model_metrics(search.task, search.teacher_dir, search.splits.validation,
                                        search.splits.labels)
        reference = {key: value for key, value in metrics.items() if isinstance(value, (int, float))}
        study.set_user_attr("reference", reference)
        study.set_user_attr("metric", search.metric)
        study.set_user_attr("metric_scale", search.task.metric_scale)
        for params in baseline_params(setup.config, search.passes, search.export_choices):
            study.enqueue_trial(params, skip_if_exists=True)
    search.reference = study.user_attrs["reference"][search.metric]
    workers, clock = setup.config.search.workers, RunClock()
    if workers == 1:
        _optimize(search, study, setup, callback=lambda s, _t: (clock(s), progress.update(s)))
    else:
        context = multiprocessing.get_context("spawn")
        processes = [context.Process(target=_worker, args=(setup, index), daemon=False) for index in range(workers)]
        for process in processes:
            process.start()
        while any(process.is_alive() for process in processes):
            clock(study)
            progress.update(study)
            time.sleep(POLL_SECONDS)
        for process in processes:
            process.join()
    clock(study)
    progress.update(study, final=True)
    return study, search


def stale_to_failed(study: optuna.Study) -> None:
    """Trials left RUNNING by a killed process: mark them failed and queue their settings again."""
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        if trial.params:
            study.enqueue_trial(trial.params, skip_if_exists=False)


def _worker(setup: SearchSetup, index: int) -> None:
    search = Search(setup)
    study = open_study(setup, worker=index)
    search.reference = study.user_attrs["reference"][search.metric]
    _optimize(search, study, setup)


def _optimize(search: Search, study: optuna.Study, setup: SearchSetup, callback=None) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = setup.config.search.trials
    callbacks = [search.promote_waiting, Converged(setup.config.search.patience, setup.config.search.seed)]
    if trials:
        callbacks.append(optuna.study.MaxTrialsCallback(trials, states=FINISHED))
    if callback:
        callbacks.append(callback)
    if trials and len(study.get_trials(deepcopy=False, states=FINISHED)) >= trials:
        return
    timeout = max(setup.deadline - time.time(), 0.0) if setup.deadline else None
    study.optimize(search.objective, timeout=timeout, callbacks=callbacks, catch=(Exception,),
                   gc_after_trial=True)


class Converged:
    """A callback for when `patience` finished trials in a row brought nothing new (each repeated settings that had
    been measured, or was stopped before its costly pass again; a promoted student is new: it gets distilled). The
    model-based sampler has then settled on what it believes: the first time, the study switches to random
    sampling, so the settings it never proposed still get screened; the second time, the space holds nothing more
    within reach and the study stops."""

    def __init__(self, patience: int, seed: int = 0):
        self.patience, self.seed = patience, seed

    def __call__(self, study: optuna.Study, _trial=None) -> None:
        if study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
            return  # queued work (a promoted student, another target) is new by construction
        trials = sorted(study.get_trials(deepcopy=False, states=FINISHED), key=lambda t: t.number)
        since = self.exploring_since if isinstance(study.sampler, optuna.samplers.RandomSampler) else -1
        seen: dict[str, set] = {}
        repeats = []
        for trial in trials:
            key = repr(sorted(trial.params.items()))
            states = seen.setdefault(key, set())
            if trial.number > since:
                repeats.append(optuna.trial.TrialState.COMPLETE in states or trial.state in states)
            states.add(trial.state)
        if len(repeats) < self.patience or not all(repeats[-self.patience:]):
            return
        if not isinstance(study.sampler, optuna.samplers.RandomSampler):
            self.exploring_since = trials[-1].number
            study.sampler = optuna.samplers.RandomSampler(seed=self.seed)
            return
        study.set_user_attr("converged", f"stopped after {self.patience} trials in a row repeated settings already "
                                         "tried, by the model-based sampler and then by random sampling")
        study.stop()


class RunClock:
    """Each run of the study (first or resumed, killed or not) records its wall time so far in the study after
    every trial, so the report can give the search's whole time, not only the last run's."""

    def __init__(self):
        self.started = time.time()
        self.key = f"{RUN_SECONDS}{self.started:.3f}"

    def __call__(self, study: optuna.Study, _trial=None) -> None:
        study.set_user_attr(self.key, time.time() - self.started)


def searched_seconds(study: optuna.Study) -> float:
    """Wall time of every run of the study together."""
    return sum(value for key, value in study.user_attrs.items() if key.startswith(RUN_SECONDS))


def candidates_of(study: optuna.Study) -> list[Candidate]:
    """Every measured candidate of the study, one per bundle (a repeated setting is measured once)."""
    seen, result = set(), []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        data = trial.user_attrs.get("candidate")
        if data and data["bundle"] not in seen:
            seen.add(data["bundle"])
            result.append(Candidate.from_json(data))
    return result
