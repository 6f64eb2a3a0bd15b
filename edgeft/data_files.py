"""Check a local data file before a library parses it, so a broken file is reported by its real cause and line.

`datasets` wraps every parser error into "An error occurred while generating the dataset"; these checks find what
is actually wrong first (empty file, bytes that are not UTF-8, a header without rows, a ragged or unterminated CSV
row, another delimiter, a JSON line that does not parse) with the standard library's own parsers.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

SUPPORTED = ".csv, .json, .jsonl or .parquet"


def file_problem(path: Path, kind: str) -> str | None:
    """What is wrong with a local `kind` ("csv" or "json") file, naming the line; None when it reads cleanly."""
    data = path.read_bytes()
    if not data.strip():
        return "the file is empty"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        return (f"line {line}: not UTF-8 (byte {data[error.start]:#04x} at offset {error.start}; "
                "Latin-1 or Windows-1252?): save the file as UTF-8")
    if kind == "csv":
        return _csv_problem(text)
    return _json_problem(text, lines=path.suffix.lower() == ".jsonl")


def _csv_problem(text: str) -> str | None:
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")), strict=True)
    try:
        header = next(reader)
        width, rows = len(header), 0
        for row in reader:
            if not row:
                continue
            rows += 1
            if len(row) != width:
                return (f"line {reader.line_num}: {len(row)} fields, the header has {width} "
                        "(a stray comma or quote?)")
    except csv.Error as error:
        if "field larger than field limit" in str(error):
            return (f"line {reader.line_num}: a field of more than {csv.field_size_limit():,} characters "
                    "(an unclosed quote merging rows?)")
        return f"line {reader.line_num}: {error} (an unclosed quote?)"
    if width == 1 and any(mark in header[0] for mark in (";", "\t", "|")):
        mark = next(mark for mark in (";", "\t", "|") if mark in header[0])
        return f"line 1: one column named {header[0]!r}: the file looks {mark!r}-separated; edgeft reads commas"
    return "line 1: a header and no rows" if rows == 0 else None


def _json_problem(text: str, lines: bool) -> str | None:
    if not lines and text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except ValueError as error:
            return f"not valid JSON: {error}"
        bad = next((i for i, record in enumerate(records) if not isinstance(record, dict)), None)
        return None if bad is None else f"record {bad + 1}: not an object with fields"
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as error:
            return f"line {number}: not valid JSON: {error}"
        if not isinstance(record, dict):
            return f"line {number}: not an object with fields (got {type(record).__name__})"
    return None
