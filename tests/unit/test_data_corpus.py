"""Counted proof: a corpus of broken data files, each a clear error naming file and line/row, nothing written.

Every case goes through `edgeft tune` (the real entry point) with the tiny recipe; none may leave a traceback, a run
folder or a staging folder behind. Cases that are not errors (NA-like labels, texts shared across splits) are
checked for what they must do instead: be read as text, or be counted and reported.
"""

import csv
import json
import warnings

import pytest
from click.testing import CliRunner
from conftest import write_recipe, write_tiny_csv

from edgeft.cli import main
from edgeft.data import load_splits
from edgeft.recipe import validate_recipe

HEADER = "text,category\n"
GOOD = "".join(f"card lost please {i},card_lost\ntransfer money now {i},transfer\n" for i in range(6))

BROKEN = {
    # name: (file name, bytes, words the error must contain)
    "empty_file": ("train.csv", b"", "the file is empty"),
    "whitespace_only": ("train.csv", b"\n \n", "the file is empty"),
    "latin1_bytes": ("train.csv", (HEADER + GOOD + "caf\xe9 card,card_lost\n").encode("latin-1"), "line 14: not UTF-8"),
    "semicolon_delimiter": ("train.csv", (HEADER + GOOD).replace(",", ";").encode(), "looks ';'-separated"),
    "ragged_row": ("train.csv", (HEADER + GOOD + "one,two,three\n").encode(), "line 14: 3 fields, the header has 2"),
    "unclosed_quote": ("train.csv", (HEADER + GOOD + '"never closed,card_lost\n' + GOOD).encode(), "unclosed quote"),
    "header_only": ("train.csv", HEADER.encode(), "a header and no rows"),
    "txt_file": ("train.txt", b"card lost\ttransfer\n", "not a .csv, .json, .jsonl or .parquet file"),
    "broken_jsonl_line": ("train.jsonl", b'{"text": "a", "category": "x"}\n{"text": "b", "category":\n',
                          "line 2: not valid JSON"),
    "jsonl_not_objects": ("train.jsonl", b'["a", "x"]\n', "line 1: not an object"),
    "json_array_of_strings": ("train.json", b'["a", "b"]', "record 1: not an object"),
    "missing_label_column": ("train.csv", (HEADER.replace("category", "intent") + GOOD).encode(),
                             "no column 'category'"),
    "empty_label_cell": ("train.csv", (HEADER + GOOD + "lost my card,\n").encode(), "row 13: empty label"),
    "empty_text_cell": ("train.csv", (HEADER + GOOD + ",card_lost\n").encode(), "row 13: empty or non-text"),
    "one_class_only": ("train.csv", (HEADER + "".join(f"card {i},card_lost\n" for i in range(9))).encode(),
                       "only one label"),
    "megabyte_row": ("train.csv", (HEADER + GOOD + "x" * 1_000_000 + ",card_lost\n").encode(),
                     "line 14: a field of more than 131,072 characters"),
    "corrupt_parquet": ("train.parquet", b"PAR1 not really parquet", "cannot read"),
    "missing_file": ("absent.csv", None, "no such file"),
    "a_folder": ("folder.csv", "dir", "not a .csv"),
}


@pytest.fixture(scope="module")
def tiny_model_ready():
    """tune imports torch and transformers; warm them once so each case stays fast."""
    import transformers  # noqa: F401


def test_broken_files_are_refused_naming_file_and_line(tmp_path, tiny_recipe, tiny_model_ready, capsys):
    runner, refused, wrong = CliRunner(), 0, []
    for name, (filename, data, words) in BROKEN.items():
        folder = tmp_path / name
        folder.mkdir()
        path = folder / filename
        if data == "dir":
            path.mkdir()
        elif data is not None:
            path.write_bytes(data)
        recipe = {**tiny_recipe, "data": {**tiny_recipe["data"], "train": str(path)},
                  "output": str(folder / "run")}
        result = runner.invoke(main, ["tune", str(write_recipe(recipe, folder / "recipe.yaml"))])
        leftovers = sorted(p.name for p in folder.iterdir() if p.name.startswith((".run", "run")))
        ok = result.exit_code == 2 and words in result.output and filename in result.output
        ok = ok and "Traceback" not in result.output and not leftovers[1:] and "run" not in leftovers
        refused += ok
        if not ok:
            wrong.append(f"{name}: exit {result.exit_code}, left {leftovers}, output {result.output[-400:]!r}")

    with capsys.disabled():
        print(f"\nbroken data files: tried {len(BROKEN)}, refused with file and line/row {refused}, written 0")
    assert not wrong, wrong
    assert len(BROKEN) >= 15


def test_text_column_equal_to_label_column_is_a_recipe_error(tiny_recipe):
    from edgeft.errors import EdgeftError

    recipe = {**tiny_recipe, "data": {**tiny_recipe["data"], "text_column": "text", "label_column": "text"}}
    with pytest.raises(EdgeftError, match="data.label_column: the same column as data.text_column"):
        validate_recipe(recipe)


def test_na_like_cells_are_text_not_missing(tmp_path, tiny_recipe):
    path = tmp_path / "train.csv"
    rows = [(f"word {i} none", label) for i in range(8) for label in ("NA", "null", "None")]
    with path.open("w", newline="") as stream:
        csv.writer(stream).writerows([("text", "category"), *rows, ("None", "NA")])
    spec = validate_recipe({**tiny_recipe, "data": {**tiny_recipe["data"], "train": str(path), "test": None}}).data

    splits = load_splits(spec)

    assert splits.labels == ["NA", "None", "null"]


def test_texts_shared_across_splits_are_counted_and_reported(tmp_path, tiny_recipe):
    train = write_tiny_csv(tmp_path / "train.csv", 20)
    test = tmp_path / "test.csv"
    lines = train.read_text().splitlines()
    test.write_text("\n".join([lines[0], *lines[1:4], "fee price extra charge new,fees"]) + "\n")
    spec = validate_recipe({**tiny_recipe, "data": {**tiny_recipe["data"], "train": str(train),
                                                     "test": str(test)}}).data

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_splits(spec)

    assert any("data.test: 3 of 4 rows also in train (first: row 1)" in str(w.message) for w in caught)


def test_quoted_fraction_and_offline_hub_ids_fail_fast(tmp_path, tiny_recipe, monkeypatch):
    from edgeft.errors import EdgeftError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EdgeftError, match="data.validation: '0.15' is quoted"):
        validate_recipe({**tiny_recipe, "data": {**tiny_recipe["data"], "validation": "0.15"}})
    spec = validate_recipe({**tiny_recipe, "data": {**tiny_recipe["data"], "validation": "someone/dataset"}}).data
    with pytest.raises(EdgeftError, match="'someone/dataset' is not a local .* and the hub is offline"):
        load_splits(spec)
    assert json  # noqa: the module is used by the corpus cases' JSON lines
