"""Progress of a search: trials done, the current front and the time left; a rich bar on a terminal, plain lines
otherwise (nohup, CI), so a long search never stays silent until the end."""

from __future__ import annotations

import time

import optuna

from edgeft.compress.select import format_metric
from edgeft.console import is_terminal

FRONT_SHOWN = 4


class SearchProgress:
    def __init__(self, stream, trials: int | None, deadline: float | None, metric: str):
        self.stream, self.trials, self.deadline, self.metric = stream, trials, deadline, metric
        self.started = time.time()
        self.last_state = None
        self.bar = None
        if is_terminal(stream):
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                                console=Console(file=stream), transient=False)
            total = trials or max((deadline or self.started) - self.started, 1.0)
            self.task = self.bar.add_task("search", total=total)
            self.bar.start()

    def update(self, study: optuna.Study, final: bool = False) -> None:
        """Show the study's state now (called after each trial, or polled while workers run)."""
        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state.is_finished()]
        complete = [t for t in done if t.state == optuna.trial.TrialState.COMPLETE]
        stopped = sum(t.state == optuna.trial.TrialState.PRUNED for t in done)
        # a trial that repeated finished settings carries its twin's values: show each point once
        front = sorted((t for t in study.best_trials if "reused" not in t.user_attrs),
                       key=lambda t: t.values[1]) if complete else []
        scale = study.user_attrs.get("metric_scale", 1.0)
        shown = ", ".join(f"{format_metric(t.values[0], scale)}@{t.values[1]:.2f}ms" for t in front[:FRONT_SHOWN])
        more = f" +{len(front) - FRONT_SHOWN}" if len(front) > FRONT_SHOWN else ""
        left = f", {max(self.deadline - time.time(), 0) / 60:.0f} min left" if self.deadline else ""
        count = f"{len(done)}/{self.trials}" if self.trials else f"{len(done)}"
        line = (f"trial {count} ({len(complete)} measured, {stopped} stopped early{left}); "
                f"front ({self.metric}@p50): {shown or '-'}{more}")
        if self.bar is not None:
            progress = len(done) if self.trials else time.time() - self.started
            self.bar.update(self.task, completed=progress, description=line)
            if final:
                self.bar.stop()
        elif (len(done), shown) != self.last_state or final:  # a new line when a trial ends, not every poll
            print(line, file=self.stream, flush=True)
        self.last_state = (len(done), shown)
