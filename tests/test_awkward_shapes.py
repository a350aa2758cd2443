"""Real-world awkward dataset shapes, written here into tmp_path: each loads with no fix or one documented fix.

One entry per shape: how the file is written, the one-line fix it needs (``{}`` for none), the format it
must load as, how many rows (every record in the file: nothing dropped silently), and, where a fix is
needed, what loading without it must say. Table-driven like tests/test_formats.py; the behaviours a row
cannot show (notes, warnings, split choice, the command line and a spec) have their own tests below.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest
import yaml

from workbench.cli import LOAD_FIELDS, build_parser, main
from workbench.config import DataConfig, config_from_args, from_dict
from workbench.data import DatasetError, find_duplicates, load_dataset
from workbench.data.load import split_names

SPAM = ["Go until jurong point, crazy.. Available only in bugis n great world la e buffet",
        "Ok lar... Joking wif u oni...", "U dun say so early hor... U c already then say...",
        "Nah I don't think he goes to usf, he lives around here though", "Even my brother is not like to speak with me",
        "As per your request Melle Melle has been set as your callertune", "I'm gonna be home soon and i don't want to"]
PROMO = "WINNER!! As a valued network customer you have been selected to receive a prize reward {}"
INTENTS = {"balance": ["what is my balance", "how much money do i have", "show my account balance"],
           "transfer": ["send money to my mum", "move 20 pounds to savings", "transfer cash to john"],
           "freeze": ["freeze my card please", "lock my debit card", "my card was stolen block it"]}
PAIRS = [[text, label] for label, texts in INTENTS.items() for text in texts]  # 9 [text, label] pairs


def _spam_rows(n: int = 100, spam_every: int = 8) -> list[tuple[str, str]]:
    """``n`` messages, about one in ``spam_every`` of them spam (13% for 8); the first one is ham."""
    return [("spam", PROMO.format(i)) if i % spam_every == spam_every - 1 else ("ham", f"{SPAM[i % len(SPAM)]} #{i}")
            for i in range(n)]


def _csv(rows, delimiter=",") -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return out.getvalue()


@dataclass
class Shape:
    """One awkward shape: ``write(tmp_path) -> path`` and what loading it must give."""

    name: str
    write: Callable[[Path], Path]
    fmt: str
    rows: int
    fix: dict = field(default_factory=dict)
    without_fix: str | None = None  # a substring of the error (message or fix) when loading without ``fix``
    first: dict = field(default_factory=dict)  # canonical field -> value of the first row


def _write(path: Path, text: str, encoding: str = "utf-8", newline: str | None = None) -> Path:
    with open(path, "w", encoding=encoding, newline=newline) as f:
        f.write(text)
    return path


def _headerless_tsv(d: Path) -> Path:
    return _write(d / "SMSSpamCollection", _csv(_spam_rows(40), "\t"))


def _semicolon(d: Path) -> Path:
    rows = [("text", "label")] + [(f"Rechnung {i}, bitte prüfen", "billing") for i in range(4)] + \
           [("Passwort vergessen", "account")]
    return _write(d / "tickets.csv", _csv(rows, ";"))


def _pipe(d: Path) -> Path:
    rows = [("utterance", "intent")] + [(t, label) for t, label in PAIRS]
    return _write(d / "intents.psv", _csv(rows, "|"))


def _bom_crlf(d: Path) -> Path:
    rows = [("text", "label")] + [(t, label) for t, label in PAIRS]
    return _write(d / "excel.csv", "\ufeff" + "".join(",".join(r) + "\r\n" for r in rows), encoding="utf-8",
                  newline="")


def _latin1(d: Path) -> Path:
    rows = [("text", "label"), ("un café au lait", "drink"), ("crème brûlée", "dessert"), ("thé vert", "drink")]
    return _write(d / "menu.csv", _csv(rows), encoding="latin-1")


def _quoted(d: Path) -> Path:
    text = ('text,label\n"Hello, world\nsecond line; with | pipes",greeting\n'
            '"She said ""hi"", then left",story\nplain row,other\n')
    return _write(d / "quoted.csv", text)


def _json_splits_of_pairs(d: Path) -> Path:
    data = {"train": PAIRS, "val": PAIRS[:3], "test": PAIRS[3:5], "oos_train": [["what is the weather", "oos"]]}
    return _write(d / "data_full.json", json.dumps(data, indent=1))


def _json_splits_of_objects(d: Path) -> Path:
    data = {"train": [{"question": f"q{i}?", "answer": f"a{i}."} for i in range(5)],
            "validation": [{"question": "v?", "answer": "v."}], "test": [{"question": "t?", "answer": "t."}]}
    return _write(d / "qa.json", json.dumps(data))


def _jsonl_nested(d: Path) -> Path:
    lines = [json.dumps({"id": i, "data": {"text": t, "label": label}}) for i, (t, label) in enumerate(PAIRS)]
    return _write(d / "export.jsonl", "\n".join(lines) + "\n")


def _json_pairs(d: Path) -> Path:
    return _write(d / "pairs.json", json.dumps(PAIRS))


def _parquet_odd_names(d: Path) -> Path:
    frame = pd.DataFrame({"Utterance Text (EN)": [t for t, _ in PAIRS], "Intent-Label#": [label for _, label in PAIRS]})
    frame.to_parquet(d / "odd.parquet")
    return d / "odd.parquet"


def _imbalanced(d: Path) -> Path:
    return _write(d / "spam.csv", _csv([("label", "message")] + _spam_rows(100)))


def _open_set(d: Path) -> Path:
    rows = [{"text": t, "intent": label} for t, label in PAIRS] + \
           [{"text": t, "intent": "oos"} for t in ("what is the weather", "tell me a joke", "who won the game")]
    return _write(d / "clinc_small.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


def _duplicated(d: Path) -> Path:
    rows = [("text", "label")] + [(t, label) for t, label in PAIRS] + [(t, label) for t, label in PAIRS[:3]]
    return _write(d / "test_with_repeats.csv", _csv(rows))


def _trailing_empty(d: Path) -> Path:
    rows = [("text", "label", "", "")] + [(t, label, "", "") for t, label in PAIRS[:4]]
    text = _csv(rows) + "\n\n" + _csv([(t, label, "", "") for t, label in PAIRS[4:]]) + "\n\n"
    return _write(d / "excel_export.csv", text)


def _alpaca(d: Path) -> Path:
    data = [{"instruction": "Summarise the ticket.", "input": "Printer on floor 3 jams.", "output": "Printer jam."},
            {"instruction": "Say hello.", "input": "", "output": "Hello!"}]
    return _write(d / "alpaca_data.json", json.dumps(data, indent=2))


def _sentence_category(d: Path) -> Path:
    rows = [("sentence", "category")] + [(t, label) for t, label in PAIRS]
    return _write(d / "sst_like.tsv", _csv(rows, "\t"))


def _tsv_named_txt(d: Path) -> Path:
    return _write(d / "SMSSpamCollection.txt", _csv(_spam_rows(20), "\t"))


def _headerless_no_label(d: Path) -> Path:
    rows = [(f"question number {i} about things", f"a longer answer number {i} with words") for i in range(6)]
    return _write(d / "qa_pairs", _csv(rows, "\t"))


SHAPES = [
    Shape("headerless-tsv-no-extension", _headerless_tsv, "classification", 40, first={"label": "ham"}),
    Shape("semicolon-csv", _semicolon, "classification", 5, first={"text": "Rechnung 0, bitte prüfen"}),
    Shape("pipe-delimited", _pipe, "classification", 9, first={"text": "what is my balance"}),
    Shape("bom-crlf-csv", _bom_crlf, "classification", 9, first={"text": "what is my balance", "label": "balance"}),
    Shape("latin1-csv", _latin1, "classification", 3, fix={"encoding": "latin-1"},
          without_fix="encoding='latin-1'", first={"text": "un café au lait"}),
    Shape("quoted-newlines-delimiters", _quoted, "classification", 3,
          first={"text": "Hello, world\nsecond line; with | pipes"}),
    Shape("json-splits-of-pairs", _json_splits_of_pairs, "classification", 9, first={"text": "what is my balance"}),
    Shape("json-splits-of-objects", _json_splits_of_objects, "prompt_completion", 5, first={"prompt": "q0?"}),
    Shape("jsonl-nested-data-field", _jsonl_nested, "classification", 9, fix={"field": "data"},
          without_fix="field='data'", first={"label": "balance"}),
    Shape("json-list-of-pairs", _json_pairs, "classification", 9, first={"label": "balance"}),
    Shape("parquet-odd-column-names", _parquet_odd_names, "classification", 9,
          fix={"columns": {"text": "Utterance Text (EN)", "label": "Intent-Label#"}}, without_fix="columns=",
          first={"text": "what is my balance"}),
    Shape("imbalanced-binary-13pct-spam", _imbalanced, "classification", 100, first={"label": "ham"}),
    Shape("open-set-intents-with-oos", _open_set, "classification", 12),
    Shape("duplicated-test-rows", _duplicated, "classification", 12),
    Shape("trailing-empty-columns-blank-lines", _trailing_empty, "classification", 9),
    Shape("alpaca-instruction-input-output", _alpaca, "instruction", 2, first={"output": "Printer jam."}),
    Shape("sentence-category-columns", _sentence_category, "classification", 9, first={"label": "balance"}),
    Shape("tsv-saved-as-txt", _tsv_named_txt, "classification", 20, fix={"reader": "tsv"},
          without_fix="reader='tsv'"),
    Shape("headerless-pairs-no-label-column", _headerless_no_label, "prompt_completion", 6,
          fix={"columns": {"prompt": "column_1", "completion": "column_2"}}, without_fix="columns={'text': 'column_1'"),
]


@pytest.mark.parametrize("shape", SHAPES, ids=[s.name for s in SHAPES])
def test_awkward_shape_loads_with_its_fix(shape, tmp_path):
    path = shape.write(tmp_path)
    ds = load_dataset(path, **shape.fix)
    assert ds.format == shape.fmt
    assert len(ds) == shape.rows and ds.report.rows_read == shape.rows == ds.report.rows_kept, "a row was dropped"
    assert ds.report.errors == []
    for key, value in shape.first.items():
        assert ds.frame[key].iat[0] == value


@pytest.mark.parametrize("shape", [s for s in SHAPES if s.fix], ids=[s.name for s in SHAPES if s.fix])
def test_awkward_shape_without_its_fix_names_the_fix(shape, tmp_path):
    path = shape.write(tmp_path)
    try:
        ds = load_dataset(path)
    except DatasetError as e:
        text = str(e)
    else:  # it loaded, but not as the data it is: a warning names the fix
        assert ds.format != shape.fmt or len(ds) != shape.rows
        text = "\n".join(str(p) for p in ds.report.problems)
    assert shape.without_fix in text, text
    assert "Fix:" in text


# --------------------------------------------------------------------------- headers


def test_headerless_file_is_read_without_a_header_and_says_so(tmp_path):
    ds = load_dataset(_headerless_tsv(tmp_path))
    assert ds.columns == {"text": "text", "label": "label"}
    assert ds.frame["_line"].iat[0] == 1, "line 1 is a record"
    (warning,) = [p for p in ds.report.warnings if "header" in p.message]
    assert warning.line == 1 and "'ham' in column 1 appears again below it" in warning.message
    assert "header=True" in warning.fix
    assert any("label (column_1), text (column_2)" in n for n in ds.report.notes)
    assert ds.frame["label"].value_counts().to_dict() == {"ham": 35, "spam": 5}


def test_a_real_header_is_used_and_the_report_says_which_line(tmp_path):
    ds = load_dataset(_imbalanced(tmp_path))
    assert ds.frame["_line"].iat[0] == 2
    assert any("line 1" in n and "is the header (label, message)" in n for n in ds.report.notes)
    assert not [p for p in ds.report.warnings if "header" in p.message]
    assert round(ds.frame["label"].eq("spam").mean(), 2) == 0.12  # 12 of 100: imbalanced, all kept


def test_a_sentence_first_row_is_a_record(tmp_path):
    rows = [(f"I would like to know how to reset the password number {i}", "account") for i in range(5)]
    ds = load_dataset(_write(tmp_path / "a.csv", _csv([("This sentence is clearly a record, not a header", "x")]
                                                      + rows)))
    assert len(ds) == 6 and ds.frame["text"].iat[0].startswith("This sentence")
    assert any("is a sentence, like the values below it" in p.message for p in ds.report.warnings)


def test_header_false_with_a_column_map(tmp_path):
    path = _headerless_tsv(tmp_path)
    ds = load_dataset(path, header=False, columns={"label": "column_1", "text": "column_2"})
    assert len(ds) == 40 and ds.frame["label"].iat[0] == "ham"
    assert not [p for p in ds.report.warnings if "header" in p.message]
    # A map naming column_N says the file has no header, even with header left on auto.
    assert len(load_dataset(path, columns={"label": "column_1", "text": "column_2"})) == 40


def test_a_column_map_naming_first_row_cells_keeps_it_as_the_header_but_warns(tmp_path):
    """The reported case: reader=csv, a tab delimiter and a map over the first message: no silent loss."""
    path = _headerless_tsv(tmp_path)
    first = path.read_text().splitlines()[0].split("\t")
    ds = load_dataset(path, reader="csv", delimiter="\t", columns={"label": first[0], "text": first[1]})
    assert len(ds) == 39
    (warning,) = [p for p in ds.report.warnings if "header" in p.message]
    assert warning.line == 1 and "looks like a record" in warning.message and "header=False" in warning.fix


def test_header_true_forces_the_first_row(tmp_path):
    ds = load_dataset(_headerless_tsv(tmp_path), header=True, columns={"label": "ham", "text": SPAM[0] + " #0"})
    assert len(ds) == 39
    assert any("because header=True" in p.message for p in ds.report.warnings)


# --------------------------------------------------------------------------- readers and delimiters


def test_tsv_reader_and_delimiter_spellings(tmp_path):
    path = _write(tmp_path / "rows.dat", _csv([("text", "label")] + PAIRS, "\t"))
    assert len(load_dataset(path, reader="tsv")) == 9
    assert len(load_dataset(path, reader="csv", delimiter="\\t")) == 9  # as a shell passes it
    assert len(load_dataset(path, reader="csv", delimiter="tab")) == 9
    with pytest.raises(DatasetError, match="is not one character"):
        load_dataset(path, reader="csv", delimiter="::")


def test_unknown_reader_lists_the_readers(tmp_path):
    with pytest.raises(DatasetError) as info:
        load_dataset(_pipe(tmp_path), reader="excel")
    (problem,) = info.value.problems
    assert "unknown reader 'excel'" in problem.message
    assert "csv, json, jsonl, parquet, text, tsv" in problem.fix


def test_quotechar(tmp_path):
    path = _write(tmp_path / "single.csv", "text,label\n'hello, there',greeting\n'bye, now',farewell\n")
    assert load_dataset(path, quotechar="'").frame["text"].tolist() == ["hello, there", "bye, now"]


def test_files_without_an_extension_are_sniffed(tmp_path):
    (tmp_path / "j").mkdir()
    records = "".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in PAIRS)
    jsonl = _write(tmp_path / "j" / "records", records)
    assert load_dataset(jsonl).format == "classification"
    assert load_dataset(_write(tmp_path / "pairs", json.dumps(PAIRS))).format == "classification"
    semi = _write(tmp_path / "semi", _csv([("text", "label")] + PAIRS, ";"))
    assert len(load_dataset(semi)) == 9
    # A folder holding only the extension-less file points at it.
    with pytest.raises(DatasetError, match="Point at the file itself"):
        load_dataset(tmp_path / "j")


def test_trailing_empty_columns_are_left_out_with_a_note(tmp_path):
    ds = load_dataset(_trailing_empty(tmp_path))
    assert [c for c in ds.frame.columns if not c.startswith("_")] == ["text", "label"]
    assert any("2 trailing column(s)" in n for n in ds.report.notes)
    assert ds.report.warnings == []


def test_duplicated_rows_are_all_loaded_and_found(tmp_path):
    ds = load_dataset(_duplicated(tmp_path))
    assert len(ds) == 12
    assert find_duplicates(ds).extra_rows("exact") == 3


def test_open_set_label_is_a_label(tmp_path):
    ds = load_dataset(_open_set(tmp_path))
    assert ds.frame["label"].value_counts()["oos"] == 3
    assert ds.columns["label"] == "intent"


# --------------------------------------------------------------------------- JSON of splits and of arrays


def test_json_of_splits_loads_train_and_names_the_others(tmp_path):
    path = _json_splits_of_pairs(tmp_path)
    assert split_names(path) == ("train", "val", "test", "oos_train")
    ds = load_dataset(path)
    assert any("loaded split 'train' of train, val, test, oos_train" in n for n in ds.report.notes)
    assert len(load_dataset(path, split="test")) == 2
    assert len(load_dataset(path, split="validation")) == 3  # another name of val
    assert load_dataset(path, split="oos_train").frame["label"].tolist() == ["oos"]
    assert len(load_dataset(path, field="test")) == 2
    with pytest.raises(DatasetError) as info:
        load_dataset(path, split="dev_2")
    (problem,) = info.value.problems
    assert problem.kind == "not_found" and "train, val, test, oos_train" in problem.message


def test_split_of_a_single_table_file_is_an_error_not_the_same_rows(tmp_path):
    path = _imbalanced(tmp_path)
    assert split_names(path) == ()
    assert len(load_dataset(path, split="train")) == 100
    with pytest.raises(DatasetError, match="holds one table, not splits"):
        load_dataset(path, split="test")


def test_bad_items_make_one_problem_per_kind_with_a_count(tmp_path):
    rows = PAIRS * 20 + [12, 13, None, ["too", "many", "values"]] + [7] * 100
    path = _write(tmp_path / "bad.json", json.dumps({"train": rows, "test": PAIRS}))
    ds = load_dataset(path, strict=False)
    assert len(ds) == 180
    problems = [p for p in ds.report.problems if p.kind == "not_records"]
    assert len(problems) == 3, [p.message for p in problems]
    numbers = next(p for p in problems if "is a number" in p.message)
    assert "item 180 of 'train' is a number" in numbers.message and "(102 in all: item 180 (line" in numbers.message
    assert any("an array of 3 values, expected an array of 2 values" in p.message for p in problems)


def test_json_lines_of_arrays(tmp_path):
    path = _write(tmp_path / "pairs.jsonl", "".join(json.dumps(p) + "\n" for p in PAIRS))
    ds = load_dataset(path)
    assert ds.format == "classification" and ds.frame["_line"].tolist() == list(range(1, 10))


# --------------------------------------------------------------------------- config, command line, spec


def test_the_options_come_from_a_spec_and_the_command_line(tmp_path, capsys):
    path = _jsonl_nested(tmp_path)
    spec = yaml.safe_load("data: {header: false, delimiter: '\\t', field: data, quotechar: null}")
    cfg = from_dict(DataConfig, {"source": str(path), **spec["data"]})
    assert cfg.load_kwargs()["field"] == "data" and cfg.header is False
    assert len(load_dataset(cfg.source, **cfg.load_kwargs())) == 9
    args = build_parser().parse_args(["data", "validate", str(path), "--field", "data", "--header", "false",
                                      "--delimiter", "\\t"])
    cli = config_from_args(DataConfig, args, LOAD_FIELDS)
    assert (cli.field, cli.header, cli.delimiter) == ("data", "false", "\\t")
    assert main(["data", "validate", str(_headerless_tsv(tmp_path)), "--header", "false",
                 "--columns", "label=column_1,text=column_2"]) == 0
    assert "classification, 40 records read, 40 valid" in capsys.readouterr().out
    with pytest.raises(Exception, match="header must be true, false or auto"):
        DataConfig(header="maybe")
