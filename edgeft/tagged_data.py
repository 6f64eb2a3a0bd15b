"""Token-tagged data (NER): CoNLL files and JSONL files of word sequences with one BIO tag per word.

CoNLL: one `token<TAB>tag` line per word (a space-separated line such as CoNLL-2003's `token POS chunk tag` also
works: the first column is the token, the last the tag), a blank line between sentences, `-DOCSTART-` lines skipped.
JSONL: one object per line with a list of words and a list of tags (keys `tokens` and `tags` unless the recipe's
`data.text_column` / `data.label_column` say otherwise). Tags are `O`, `B-<type>` or `I-<type>` (BIO / IOB2; an
`I-` after `O` is read as the start of an entity, as conlleval and seqeval do). Every bad line is reported with
its file and line number.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from edgeft.data import MAX_ROWS_REPORTED, Splits
from edgeft.errors import EdgeftError

TAG = re.compile(r"^(O|[BI]-\S+)$")
OUTSIDE = "O"
DOCSTART = "-DOCSTART-"
CONLL_SUFFIXES = {".conll", ".conllu", ".bio", ".iob", ".iob2", ".txt", ".tsv", ".annotated"}
JSONL_SUFFIXES = {".jsonl", ".json"}


def load_tagged_splits(spec, seed: int = 42) -> Splits:
    """Read and check every split; all problems are reported at once.

    Returns:
        Splits with columns `tokens` (list of words) and `tags` (list of ids into `labels`). `labels` is `O`, then
        `B-<type>`, `I-<type>` for every type seen in train, types sorted.

    Raises:
        EdgeftError: a missing or unreadable file, bad lines (file:line), or test/validation types unseen in train.
    """
    from datasets import Dataset

    problems: list[str] = []
    raw = {"train": read_tagged(spec.train, "train", spec, problems)}
    if isinstance(spec.validation, str):
        raw["validation"] = read_tagged(spec.validation, "validation", spec, problems)
    if spec.test:
        raw["test"] = read_tagged(spec.test, "test", spec, problems)
    if problems:
        raise EdgeftError(problems)

    types = sorted({tag[2:] for _, tags in raw["train"] for tag in tags if tag != OUTSIDE})
    labels = [OUTSIDE] + [f"{prefix}-{kind}" for kind in types for prefix in "BI"]
    for name in ("validation", "test"):
        unseen = sorted({tag[2:] for _, tags in raw.get(name, []) for tag in tags if tag != OUTSIDE} - set(types))
        if unseen:
            problems.append(f"data.{name}: entity types not in train: {', '.join(unseen[:10])}")
    if problems:
        raise EdgeftError(problems)

    index = {label: i for i, label in enumerate(labels)}
    encoded = {
        name: Dataset.from_dict({"tokens": [words for words, _ in rows],
                                 "tags": [[index[tag] for tag in tags] for _, tags in rows]})
        for name, rows in raw.items()
    }
    if "validation" not in encoded:
        parts = encoded["train"].train_test_split(test_size=spec.validation, seed=spec.held_out_seed(seed))
        encoded["train"], encoded["validation"] = parts["train"], parts["test"]
    return Splits(encoded["train"], encoded["validation"], encoded.get("test"), labels)


def read_tagged(source: str, split: str, spec, problems: list[str]) -> list[tuple[list[str], list[str]]] | None:
    """One file as (words, tags) sentences, or None after appending problems."""
    path = Path(source).expanduser()
    if not path.is_file():
        problems.append(f"data.{split}: no such file: {source}")
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        problems.append(f"data.{split}: cannot read {source}: {error}")
        return None
    bad: list[str] = []
    if path.suffix.lower() in JSONL_SUFFIXES:
        rows = _jsonl(text, source, spec.text_column or "tokens", spec.label_column or "tags", bad)
    else:
        rows = _conll(text, source, bad)
    if not rows and not bad:
        bad.append(f"{source}: no sentences found")
    if bad:
        problems.extend(bad[:MAX_ROWS_REPORTED])
        if len(bad) > MAX_ROWS_REPORTED:
            problems.append(f"{source}: ... and {len(bad) - MAX_ROWS_REPORTED} more bad lines")
        return None
    return rows


def _conll(text: str, source: str, bad: list[str]) -> list[tuple[list[str], list[str]]]:
    rows, words, tags = [], [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            if words:
                rows.append((words, tags))
                words, tags = [], []
            continue
        columns = line.split("\t") if "\t" in line else line.split()
        if columns[0] == DOCSTART:
            continue
        if len(columns) < 2 or not columns[0] or not columns[-1].strip():
            bad.append(f"{source}: line {number}: expected token<TAB>tag (got {line!r})")
            continue
        tag = columns[-1].strip()
        if not TAG.match(tag):
            bad.append(f"{source}: line {number}: tag {tag!r} is not O, B-<type> or I-<type>")
            continue
        words.append(columns[0])
        tags.append(tag)
    if words:
        rows.append((words, tags))
    return rows


def _jsonl(text: str, source: str, words_key: str, tags_key: str, bad: list[str]) -> list:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as error:
            bad.append(f"{source}: line {number}: not valid JSON: {error}")
            continue
        words, tags = (record.get(words_key), record.get(tags_key)) if isinstance(record, dict) else (None, None)
        if not _strings(words) or not _strings(tags):
            bad.append(f"{source}: line {number}: needs {words_key!r} and {tags_key!r} as lists of strings")
        elif len(words) != len(tags):
            bad.append(f"{source}: line {number}: {len(words)} {words_key} but {len(tags)} {tags_key}")
        elif not words:
            bad.append(f"{source}: line {number}: an empty sentence")
        elif wrong := [tag for tag in tags if not TAG.match(tag)]:
            bad.append(f"{source}: line {number}: tag {wrong[0]!r} is not O, B-<type> or I-<type>")
        else:
            rows.append((words, tags))
    return rows


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)
