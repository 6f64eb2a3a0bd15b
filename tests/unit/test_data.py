import json

import pandas as pd
import pytest
from conftest import write_tiny_csv

from edgeft.data import load_splits
from edgeft.errors import EdgeftError
from edgeft.recipe import DataSpec


def _spec(train, **fields):
    return DataSpec(train=str(train), label_column="category", **fields)


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_formats_and_column_mapping(tmp_path, suffix):
    # setup: the same rows in each format, with non-default column names
    frame = pd.read_csv(write_tiny_csv(tmp_path / "base.csv", 20)).rename(columns={"text": "utterance"})
    path = tmp_path / f"train.{suffix}"
    {"csv": lambda: frame.to_csv(path, index=False),
     "jsonl": lambda: frame.to_json(path, orient="records", lines=True),
     "parquet": lambda: frame.to_parquet(path)}[suffix]()
    # execute
    splits = load_splits(_spec(path, text_column="utterance", validation=0.25))
    # assert
    assert splits.labels == ["card_lost", "fees", "transfer"]
    assert splits.train.column_names == ["text", "label"]
    assert len(splits.train) == 45 and len(splits.validation) == 15
    assert splits.test is None


def test_a_fixed_validation_seed_holds_out_the_same_rows_whatever_the_training_seed(tmp_path):
    path = write_tiny_csv(tmp_path / "t.csv", 40)
    drawn = [set(load_splits(_spec(path, validation=0.25), seed=seed).validation["text"]) for seed in (1, 2)]
    fixed = [set(load_splits(_spec(path, validation=0.25, validation_seed=7), seed=seed).validation["text"])
             for seed in (1, 2)]
    assert drawn[0] != drawn[1] and fixed[0] == fixed[1]


def test_validation_split_is_stratified(tmp_path):
    splits = load_splits(_spec(write_tiny_csv(tmp_path / "t.csv", 40), validation=0.25))
    counts = pd.Series(splits.validation["label"]).value_counts()
    assert sorted(counts.tolist()) == [10, 10, 10]


def test_bad_rows_reported_by_row(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("text,category\nhello,a\n,b\nworld,\nok,a\n")
    with pytest.raises(EdgeftError) as caught:
        load_splits(_spec(path))
    assert any("row 2: empty or non-text value" in p for p in caught.value.problems)
    assert any("row 3: empty label" in p for p in caught.value.problems)


def test_unknown_column_lists_columns(tmp_path):
    path = write_tiny_csv(tmp_path / "t.csv", 5)
    with pytest.raises(EdgeftError) as caught:
        load_splits(DataSpec(train=str(path), label_column="intent"))
    assert "data.label_column: no column 'intent'" in caught.value.problems[0]
    assert "columns are: text, category" in caught.value.problems[0]


def test_test_label_missing_from_train_and_missing_file(tmp_path):
    train = write_tiny_csv(tmp_path / "train.csv", 10)
    test = tmp_path / "test.csv"
    test.write_text("text,category\nsomething new,brand_new_intent\n")
    with pytest.raises(EdgeftError, match="data.test: labels not in train: brand_new_intent"):
        load_splits(_spec(train, test=str(test)))
    with pytest.raises(EdgeftError, match="data.test: no such file"):
        load_splits(_spec(train, test=str(tmp_path / "nope.csv")))


def test_validation_file_and_numeric_labels_sort_naturally(tmp_path):
    path = tmp_path / "t.json"
    rows = [{"text": f"row {i}", "category": i % 12} for i in range(48)]
    path.write_text(json.dumps(rows))
    splits = load_splits(_spec(path, validation=str(path)))
    assert splits.labels[:3] == ["0", "1", "2"] and splits.labels[-1] == "11"
    assert len(splits.validation) == 48
