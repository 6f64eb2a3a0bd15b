"""Atomic outputs: work is staged in a hidden sibling folder and only moved into place once complete."""

from __future__ import annotations

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
