"""Atomic outputs: work is staged in a hidden sibling folder and only moved into place once complete; killed work
resumes from the staged folder's last complete checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def promote(staged: Path, output: Path) -> None:
    """Move a finished `staged` folder to `output`, replacing an old one only now (renames, same filesystem)."""
    if output.exists():
        old = output.parent / f".{output.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        output.rename(old)
        staged.rename(output)
        shutil.rmtree(old)
    else:
        staged.rename(output)


def complete_checkpoints(folder: Path) -> list[Path]:
    """The complete Trainer checkpoints under `folder/checkpoints`, oldest step first.

    `trainer_state.json` is the last file a checkpoint gets, so a checkpoint cut short by a kill (that file missing,
    or killed while it was written) is skipped.
    """
    complete = [
        path for path in (folder / "checkpoints").glob("checkpoint-*")
        if path.name.split("-")[-1].isdigit() and _complete_state(path / "trainer_state.json")
    ]
    return sorted(complete, key=lambda path: int(path.name.split("-")[-1]))


def last_checkpoint(folder: Path) -> str | None:
    """The newest complete Trainer checkpoint under `folder/checkpoints`, if any."""
    complete = complete_checkpoints(folder)
    return str(complete[-1]) if complete else None


def _complete_state(path: Path) -> bool:
    try:
        return "global_step" in json.loads(path.read_text())
    except (OSError, ValueError, TypeError):  # missing, cut short, or not a mapping
        return False
