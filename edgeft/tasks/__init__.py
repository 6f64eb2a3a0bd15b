"""Tasks: what differs between kinds of model, registered in one visible place.

Each task is one module with one `TASK` object following `edgeft.tasks.base.Task`; its device half lives under
`edgeft/runtime/tasks/` with the same name.
"""

from __future__ import annotations

from edgeft.errors import EdgeftError
from edgeft.tasks import causal_lm, sequence_classification, token_classification
from edgeft.tasks.base import Task

TASKS: dict[str, Task] = {
    "sequence-classification": sequence_classification.TASK,
    "token-classification": token_classification.TASK,
    "causal-lm": causal_lm.TASK,
}
DEFAULT_TASK = "sequence-classification"


def get_task(name: str | None) -> Task:
    """The task registered under `name` (None: the default, sentence classification, as in files made before tasks).

    Raises:
        EdgeftError: an unknown name, listing the known ones.
    """
    name = name or DEFAULT_TASK
    if name not in TASKS:
        raise EdgeftError(f"task: {name!r} is not one of {', '.join(TASKS)}")
    return TASKS[name]
