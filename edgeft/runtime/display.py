"""Texts shown to people on a terminal: one line each, no control characters acting on the terminal."""

from __future__ import annotations

# Newlines would split one record over lines; escape codes could move the cursor or recolour the terminal.
_ESCAPES = {code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F]} | {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}


def escape(text: str) -> str:
    """`text` with backslashes and control characters escaped, so it prints on one line and moves no cursor."""
    return text.replace("\\", "\\\\").translate(_ESCAPES)
