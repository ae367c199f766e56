"""The submission CSV: what write_submission produces, and that validate_submission names every defect."""
from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_bson

from cdiscount import submission
from cdiscount.cli import main
from cdiscount.errors import InputError
from cdiscount.submission import (
    SubmissionError,
    gz_path,
    read_category_ids,
    read_test_ids,
    validate_submission,
    write_submission,
)

IDS = np.array([10, 3, 7, 42, 5], dtype=np.int64)  # test.bson order, deliberately not sorted
CATS = np.array([1000010653, 1000010653, 1000004079, 1000004141, 1000015539], dtype=np.int64)
TAXONOMY = np.array([1000004079, 1000004141, 1000010653, 1000015539, 1000018290], dtype=np.int64)


def rows(ids=IDS, cats=CATS) -> list[str]:
    return [f"{i},{c}" for i, c in zip(ids, cats)]


def write(path: Path, lines: list[str], *, eol: str = "\n", header: str = "_id,category_id") -> Path:
    path.write_bytes(eol.join([header, *lines]).encode() + eol.encode())
    return path


def check(path: Path) -> list[str]:
    return validate_submission(path, test_products=IDS, categories=TAXONOMY)


def test_written_file_is_exactly_what_kaggle_expects(tmp_path: Path) -> None:
    out = write_submission(IDS, CATS, tmp_path / "sub" / "submission.csv")
    assert out == [tmp_path / "sub" / "submission.csv", tmp_path / "sub" / "submission.csv.gz"]
    data = out[0].read_bytes()
    assert data == ("_id,category_id\n" + "\n".join(rows()) + "\n").encode("ascii")
    assert gzip.decompress(out[1].read_bytes()) == data
    assert check(out[0]) == [] and check(out[1]) == []
    assert sorted(p.name for p in out[0].parent.iterdir()) == ["submission.csv", "submission.csv.gz"]  # no temp files


def test_gzip_copy_is_deterministic_and_optional(tmp_path: Path) -> None:
    a = write_submission(IDS, CATS, tmp_path / "a" / "s.csv")[1].read_bytes()
    b = write_submission(IDS, CATS, tmp_path / "b" / "s.csv")[1].read_bytes()
    assert a == b  # no timestamp: same predictions, same bytes, DVC sees no change
    assert write_submission(IDS, CATS, tmp_path / "c.csv", gzip_copy=False) == [tmp_path / "c.csv"]
    assert not gz_path(tmp_path / "c.csv").exists()


def test_writer_refuses_mismatched_or_non_integer_input(tmp_path: Path) -> None:
    with pytest.raises(SubmissionError, match="5 test _ids but 4"):
        write_submission(IDS, CATS[:4], tmp_path / "s.csv")
    with pytest.raises(SubmissionError, match="integers"):
        write_submission(IDS, CATS.astype(float), tmp_path / "s.csv")
    assert not (tmp_path / "s.csv").exists()


def test_an_empty_test_set_writes_just_the_header(tmp_path: Path) -> None:
    out = write_submission(np.array([], dtype=np.int64), np.array([], dtype=np.int64), tmp_path / "s.csv")
    assert out[0].read_bytes() == b"_id,category_id\n"
    assert validate_submission(out[0], test_products=[], categories=TAXONOMY) == []


def test_a_valid_hand_written_file_passes(tmp_path: Path) -> None:
    assert check(write(tmp_path / "s.csv", rows())) == []


def test_last_line_without_newline_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("_id,category_id\n" + "\n".join(rows()))
    assert check(path) == []


@pytest.mark.parametrize(
    "header, expected",
    [
        ("id,category_id", "line 1: wrong header: expected '_id,category_id', found 'id,category_id'"),
        ('"_id","category_id"', "line 1: wrong header"),
        ("_id,category_id,prob", "line 1: wrong header"),
    ],
)
def test_wrong_header(tmp_path: Path, header: str, expected: str) -> None:
    problems = check(write(tmp_path / "s.csv", rows(), header=header))
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_missing_header_is_reported_and_line_1_still_counts_as_a_row(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("\n".join(rows()) + "\n")
    assert check(path) == ["line 1: no header: expected '_id,category_id', found a data row '10,1000010653'"]


def test_bom(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(b"\xef\xbb\xbf" + ("_id,category_id\n" + "\n".join(rows()) + "\n").encode())
    problems = check(path)
    assert len(problems) == 1 and "line 1" in problems[0] and "byte-order mark (BOM)" in problems[0]


def test_crlf_everywhere(tmp_path: Path) -> None:
    assert check(write(tmp_path / "s.csv", rows(), eol="\r\n")) == [
        "Windows line endings (\\r\\n) on all 6 lines: use \\n"]


def test_mixed_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    lines = rows()
    path.write_bytes(("_id,category_id\n" + "\n".join(lines[:2]) + "\r\n" + "\n".join(lines[2:]) + "\n").encode())
    assert check(path) == ["mixed line endings: 1 line ends with \\r\\n (first: line 3), 5 with \\n (first: line 1): "
                           "use \\n everywhere"]


def test_missing_row(tmp_path: Path) -> None:
    lines = rows()
    del lines[3]
    assert check(write(tmp_path / "s.csv", lines)) == ["1 of 5 test _ids have no row: 42 (test product #4)"]


def test_extra_row(tmp_path: Path) -> None:
    problems = check(write(tmp_path / "s.csv", [*rows(), "99,1000004079"]))
    assert problems == ["line 7: _id 99 is not a product of the test set",
                        "1 row has an _id that is not in the test set"]


def test_duplicate_row(tmp_path: Path) -> None:
    lines = rows()
    lines.insert(4, lines[1])  # _id 3 again, on line 6
    problems = check(write(tmp_path / "s.csv", lines))
    assert problems == ["line 6: duplicate _id 3 (first at line 3)", "1 row repeats an _id already seen"]


def test_duplicate_replacing_a_row_reports_both(tmp_path: Path) -> None:
    lines = rows()
    lines[4] = lines[0]
    problems = check(write(tmp_path / "s.csv", lines))
    assert "line 6: duplicate _id 10 (first at line 2)" in problems
    assert "1 of 5 test _ids have no row: 5 (test product #5)" in problems


def test_bad_order(tmp_path: Path) -> None:
    lines = rows()
    lines[1], lines[2] = lines[2], lines[1]
    assert check(write(tmp_path / "s.csv", lines)) == [
        "line 3: _id 7, but test product #2 of test.bson is _id 3: rows must follow test.bson order"]


def test_unknown_category(tmp_path: Path) -> None:
    lines = rows()
    lines[2] = "7,1234"
    assert check(write(tmp_path / "s.csv", lines)) == [
        "line 4: category_id 1234 is not in the taxonomy",
        "1 row has a category_id that is not in the taxonomy"]


def test_categories_are_optional(tmp_path: Path) -> None:
    lines = rows()
    lines[2] = "7,1234"
    assert validate_submission(write(tmp_path / "s.csv", lines), test_products=IDS) == []


@pytest.mark.parametrize(
    "line, expected",
    [
        ("7,abc", "line 4: category_id 'abc' is not a non-negative integer"),
        ("7,1000004079.0", "line 4: category_id '1000004079.0' is not a non-negative integer"),
        ("7, 1000004079", "line 4: category_id ' 1000004079' is not a non-negative integer"),
        ("7,-1", "line 4: category_id '-1' is not a non-negative integer"),
        ("7,", "line 4: category_id '' is not a non-negative integer"),
        ("7,99999999999999999999999", "line 4: category_id '99999999999999999999999' is not a non-negative integer"),
    ],
)
def test_non_integer_category(tmp_path: Path, line: str, expected: str) -> None:
    lines = rows()
    lines[2] = line
    assert check(write(tmp_path / "s.csv", lines)) == [expected]  # the _id still counts: nothing else is wrong


def test_non_integer_id_also_leaves_that_product_missing(tmp_path: Path) -> None:
    lines = rows()
    lines[2] = "x7,1000004079"
    assert check(write(tmp_path / "s.csv", lines)) == [
        "line 4: _id 'x7' is not a non-negative integer",
        "1 of 5 test _ids have no row: 7 (test product #3)"]


def test_wrong_number_of_columns(tmp_path: Path) -> None:
    lines = rows()
    lines[0] = "10,1000010653,0.93"
    lines[1] = "3"
    problems = check(write(tmp_path / "s.csv", lines))
    assert problems[:2] == ["line 2: expected 2 columns (_id,category_id), found 3: '10,1000010653,0.93'",
                            "line 3: expected 2 columns (_id,category_id), found 1: '3'"]
    assert problems[2] == "2 of 5 test _ids have no row: 10 (test product #1), 3 (test product #2)"


def test_empty_line(tmp_path: Path) -> None:
    lines = rows()
    lines.insert(2, "")
    assert check(write(tmp_path / "s.csv", lines)) == ["line 4: empty line"]


def test_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    lines = [line.encode() for line in rows()]
    lines[3] = b"42,10000\xe941"
    path.write_bytes(b"\n".join([b"_id,category_id", *lines]) + b"\n")
    problems = check(path)
    assert problems[0] == "line 5: not UTF-8: byte 0xe9 at column 9 ('42,10000\\xe941')"
    assert problems[1] == "1 of 5 test _ids have no row: 42 (test product #4)"


def test_stray_carriage_return(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(b"_id,category_id\n" + "\r".join(rows()).encode() + b"\n")  # old Mac line endings
    assert check(path)[0].startswith("line 2: carriage return (\\r) inside the line")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(b"")
    problems = check(path)
    assert problems[0].startswith("empty file: expected the header '_id,category_id'")
    assert problems[1].startswith("5 of 5 test _ids have no row")


def test_many_defects_of_one_kind_are_listed_then_counted(tmp_path: Path) -> None:
    ids = np.arange(1, 101)
    path = write(tmp_path / "s.csv", [f"{i},oops" for i in ids])
    problems = validate_submission(path, test_products=ids, categories=TAXONOMY)
    assert problems[:5] == [f"line {n}: category_id 'oops' is not a non-negative integer" for n in range(2, 7)]
    assert problems[5:] == ["... and 95 more lines with non-integer values"]


def test_line_numbers_stay_right_across_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(submission, "CHUNK_LINES", 7)
    ids = np.arange(100, 140)
    lines = [f"{i},{TAXONOMY[0]}" for i in ids]
    lines[12] = "bad"
    lines.insert(20, "")
    lines[30] = f"{ids[2]},{TAXONOMY[0]}"  # a duplicate of line 4, in a later chunk
    lines[35] = f"{ids[35 - 1]},1"
    problems = validate_submission(write(tmp_path / "s.csv", lines), test_products=ids, categories=TAXONOMY)
    assert problems == [
        "line 14: expected 2 columns (_id,category_id), found 1: 'bad'",
        "line 22: empty line",
        "line 32: duplicate _id 102 (first at line 4)",
        "line 37: category_id 1 is not in the taxonomy",
        "1 row repeats an _id already seen",
        "2 of 40 test _ids have no row: 112 (test product #13), 129 (test product #30)",
        "1 row has a category_id that is not in the taxonomy",
    ]


def test_gzip_input_is_detected_by_content(tmp_path: Path) -> None:
    lines = rows()
    lines[2] = "7,1234"
    plain = write(tmp_path / "s.csv", lines)
    packed = tmp_path / "upload.bin"  # whatever the name
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert check(packed) == check(plain) != []


def test_truncated_gzip_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    out = write_submission(np.arange(1, 5001), np.full(5000, TAXONOMY[0]), tmp_path / "s.csv")[1]
    out.write_bytes(out.read_bytes()[:-200])
    problems = validate_submission(out, test_products=np.arange(1, 5001), categories=TAXONOMY)
    assert any("cannot read further" in p for p in problems), problems


def test_missing_files_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="submission file not found"):
        check(tmp_path / "nope.csv")
    path = write(tmp_path / "s.csv", rows())
    with pytest.raises(InputError, match="test products file not found"):
        validate_submission(path, test_products=tmp_path / "test.bson")


# --- reference data: test ids from parquet / BSON, categories from csv / parquet -----------------


def test_validate_against_a_bson_test_file(tmp_path: Path) -> None:
    docs = [{"_id": int(i), "imgs": [{"picture": b"\xff\xd8\xff" + bytes(20)}]} for i in IDS]
    docs[1] = {"imgs": [{"picture": b"\xff\xd8\xff\xe0"}], "_id": int(IDS[1])}  # _id not first: decoded
    docs[3]["_id"] = 2**40 + 42  # an int64 _id
    bson_path = write_bson(tmp_path / "test.bson", docs)
    ids = IDS.copy()
    ids[3] = 2**40 + 42
    assert read_test_ids(bson_path).tolist() == ids.tolist()
    good = write(tmp_path / "good.csv", rows(ids))
    assert validate_submission(good, test_products=bson_path, categories=TAXONOMY) == []
    swapped = rows(ids)
    swapped[0], swapped[4] = swapped[4], swapped[0]
    problems = validate_submission(write(tmp_path / "bad.csv", swapped), test_products=bson_path)
    assert problems == ["line 2: _id 5, but test product #1 of test.bson is _id 10: rows must follow test.bson order"]


def test_reference_data_from_parquet_and_dataframes(tmp_path: Path) -> None:
    pd.DataFrame({"_id": IDS, "n_imgs": 1}).to_parquet(tmp_path / "test_products.parquet")
    pd.DataFrame({"category_id": TAXONOMY[::-1], "idx": range(5)}).to_parquet(tmp_path / "taxonomy.parquet")
    assert read_test_ids(tmp_path / "test_products.parquet").tolist() == IDS.tolist()
    assert read_test_ids(pd.DataFrame({"_id": IDS})).tolist() == IDS.tolist()
    assert read_category_ids(tmp_path / "taxonomy.parquet").tolist() == TAXONOMY.tolist()
    path = write(tmp_path / "s.csv", rows())
    assert validate_submission(path, test_products=tmp_path / "test_products.parquet",
                               categories=tmp_path / "taxonomy.parquet") == []


def test_duplicate_ids_in_the_test_set_are_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="_id 3 appears twice"):
        validate_submission(write(tmp_path / "s.csv", rows()), test_products=[10, 3, 3])


def test_real_category_names_csv(tmp_path: Path, shared: Path) -> None:
    cats = read_category_ids(shared / "category_names.csv")
    assert len(cats) == 5270
    ids = np.arange(1, 5271)
    out = write_submission(ids, cats[::-1], tmp_path / "s.csv")[0]
    assert validate_submission(out, test_products=ids, categories=shared / "category_names.csv") == []
    text = out.read_text().splitlines()
    text[100] = "100,1000000000"
    out.write_text("\n".join(text) + "\n")
    assert validate_submission(out, test_products=ids, categories=shared / "category_names.csv") == [
        "line 101: category_id 1000000000 is not in the taxonomy",
        "1 row has a category_id that is not in the taxonomy"]


def test_real_test_bson_from_kaggle_fixture(kaggle_dir: Path, example_docs: list[dict], tmp_path: Path) -> None:
    ids = np.array([d["_id"] for d in example_docs])
    assert read_test_ids(kaggle_dir / "test.bson").tolist() == ids.tolist()
    out = write_submission(ids, np.array([d["category_id"] for d in example_docs]), tmp_path / "s.csv")[0]
    assert validate_submission(out, test_products=kaggle_dir / "test.bson",
                               categories=kaggle_dir / "category_names.csv") == []


# --- CLI -----------------------------------------------------------------------------------------


def test_cli_validate_submission(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # no params.yaml: these commands don't need one
    pd.DataFrame({"_id": IDS}).to_parquet(tmp_path / "test_products.parquet")
    pd.DataFrame({"category_id": TAXONOMY}).to_parquet(tmp_path / "taxonomy.parquet")
    good = write_submission(IDS, CATS, tmp_path / "s.csv")[0]
    args = ["--test", "test_products.parquet", "--categories", "taxonomy.parquet"]
    assert main(["validate-submission", str(good), *args]) == 0
    assert capsys.readouterr().out == "valid: 5 rows\n"
    assert main(["validate-submission", str(gz_path(good)), *args]) == 0
    capsys.readouterr()

    bad = write(tmp_path / "bad.csv", [*rows()[:4], "5,1234"], eol="\r\n")
    assert main(["validate-submission", str(bad), *args]) == 1
    out = capsys.readouterr().out
    assert "line 6: category_id 1234 is not in the taxonomy" in out
    assert "Windows line endings" in out and out.rstrip().endswith("(3 problems listed)")


def test_cli_validate_submission_defaults_and_missing_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            caplog) -> None:
    monkeypatch.chdir(tmp_path)
    good = write_submission(IDS, CATS, tmp_path / "s.csv")[0]
    assert main(["validate-submission", str(good)]) == 2  # no decode outputs yet
    assert "data/interim/test_products.parquet" in caplog.text
    interim = tmp_path / "data" / "interim"
    interim.mkdir(parents=True)
    pd.DataFrame({"_id": IDS}).to_parquet(interim / "test_products.parquet")
    pd.DataFrame({"category_id": TAXONOMY}).to_parquet(interim / "taxonomy.parquet")
    assert main(["validate-submission", str(good)]) == 0
    assert main(["validate-submission", "nope.csv"]) == 2


def test_cli_validate_against_bson_and_category_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_bson(tmp_path / "test.bson", [{"_id": int(i), "imgs": []} for i in IDS])
    pd.DataFrame({"category_id": TAXONOMY, "category_level1": "A", "category_level2": "B",
                  "category_level3": "C"}).to_csv(tmp_path / "category_names.csv", index=False)
    good = write_submission(IDS, CATS, tmp_path / "s.csv")[0]
    assert main(["validate-submission", str(good), "--test", "test.bson", "--categories", "category_names.csv"]) == 0


def _stage_inputs(root: Path, labels: dict[int, int]) -> None:
    """What the submission stage reads, hand-made: test products 1, 2, 3; categories 10, 20."""
    (root / "data/interim").mkdir(parents=True)
    (root / "data/preds/ensemble").mkdir(parents=True)
    (root / "raw").mkdir()
    write_bson(root / "raw/test.bson", [{"_id": i, "imgs": []} for i in (1, 2, 3)])
    (root / "params.yaml").write_text("data:\n  raw_dir: raw\n")
    pd.DataFrame({"category_id": [10, 20], "idx": [0, 1]}).to_parquet(root / "data/interim/taxonomy.parquet")
    pd.DataFrame({"_id": list(labels), "category_id": list(labels.values()),
                  "source": ["model"] * len(labels)}).to_parquet(root / "data/preds/ensemble/test_labels.parquet")


@pytest.mark.parametrize("labels, message", [
    ({1: 10, 3: 20}, r"test_labels.parquet: 1 test products have no label, e.g. _id \[2\]"),
    ({1: 10, 2: 20}, r"test_labels.parquet: 1 test products have no label, e.g. _id \[3\]"),
    ({1: 10, 2: 99, 3: 20}, r"submission.csv: .*99"),
])
def test_submission_stage_failure_is_one_line_exit_2_and_leaves_no_csv(tmp_path: Path, monkeypatch, caplog,
                                                                       labels, message) -> None:
    from conftest import run_stage

    _stage_inputs(tmp_path, labels)
    monkeypatch.chdir(tmp_path)
    assert run_stage("submission") == 2
    assert re.search(message, caplog.text), caplog.text
    assert not (tmp_path / "submissions").exists() or not any((tmp_path / "submissions").iterdir())
    assert not (tmp_path / "metrics/submission.json").exists()


def test_submission_stage_writes_the_validated_csv_in_test_order(tmp_path: Path, monkeypatch) -> None:
    from conftest import run_stage

    _stage_inputs(tmp_path, {3: 20, 1: 10, 2: 10})
    monkeypatch.chdir(tmp_path)
    assert run_stage("submission") == 0
    assert (tmp_path / "submissions/submission.csv").read_text() == "_id,category_id\n1,10\n2,10\n3,20\n"
    assert json.loads((tmp_path / "metrics/submission.json").read_text()) == {"rows": 3, "override_rows": 0}


def _labels(path: Path, ids, cats, sources) -> Path:
    pd.DataFrame({"_id": np.asarray(ids, np.int64), "category_id": np.asarray(cats, np.int64),
                  "source": sources}).to_parquet(path, index=False)
    return path


def test_run_submission_follows_test_order_whatever_the_labels_order(tmp_path: Path) -> None:
    from cdiscount.submission import run_submission

    shuffle = np.array([3, 0, 4, 1, 2])
    src = ["model", "override", "model", "override", "override"]
    labels = _labels(tmp_path / "l.parquet", IDS[shuffle], CATS[shuffle], [src[i] for i in shuffle])
    summary = run_submission(labels, IDS, TAXONOMY, tmp_path / "s.csv")
    assert summary == {"rows": 5, "override_rows": 3}
    assert (tmp_path / "s.csv").read_text().splitlines()[1:] == rows()
    in_order = _labels(tmp_path / "o.parquet", IDS, CATS, src)
    assert run_submission(in_order, IDS, TAXONOMY, tmp_path / "o.csv") == summary
    assert (tmp_path / "o.csv").read_bytes() == (tmp_path / "s.csv").read_bytes()


def test_run_submission_names_missing_and_repeated_labels(tmp_path: Path) -> None:
    from cdiscount.submission import run_submission

    short = _labels(tmp_path / "short.parquet", IDS[:3], CATS[:3], ["model"] * 3)
    with pytest.raises(InputError, match=r"2 test products have no label, e.g. _id \[42, 5\]"):
        run_submission(short, IDS, TAXONOMY, tmp_path / "s.csv")
    twice = _labels(tmp_path / "twice.parquet", np.r_[IDS, IDS[1]], np.r_[CATS, CATS[0]], ["model"] * 6)
    with pytest.raises(InputError, match=r"1 test products have several labels, e.g. _id \[3\]"):
        run_submission(twice, IDS, TAXONOMY, tmp_path / "s.csv")
    assert not (tmp_path / "s.csv").exists()
