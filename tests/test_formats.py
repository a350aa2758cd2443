"""Every supported source loads into the right canonical format."""

from __future__ import annotations

import pandas as pd
import pytest

from workbench.data import DatasetError, load_dataset

F = "tests/fixtures/formats/"

CASES = [
    # path, kwargs, format, mapping subset, rows, first-row checks
    ("pc.jsonl", {}, "prompt_completion", {"prompt": "prompt"}, 3, {"prompt": "How do I reset my password?"}),
    ("alpaca.json", {}, "instruction", {"instruction": "instruction", "input": "input", "output": "output"}, 3,
     {"output": "Printing to Follow-Me fails since Monday."}),
    ("chat.jsonl", {}, "chat", {"messages": "messages"}, 2, {}),
    ("sharegpt.json", {}, "chat", {"messages": "conversations"}, 2, {"id": "a1"}),
    ("cls.csv", {}, "classification", {"text": "text", "label": "label"}, 4, {"label": "lost_card"}),
    ("cls.tsv", {}, "classification", {"text": "utterance", "label": "intent"}, 4, {"text": "turn on the lights"}),
    ("nested.json", {}, "prompt_completion", {"prompt": "question", "completion": "answer"}, 2,
     {"completion": "Your line manager and the data owner."}),
    ("deep.json", {"field": "payload.rows"}, "corpus", {"text": "text"}, 2, {"text": "first document"}),
    ("columnar.json", {}, "classification", {"text": "sentence"}, 3, {"label": 1}),
    ("corpus.txt", {}, "corpus", {"text": "text"}, 3, {"text": "The service desk answers on extension 4357."}),
    ("paragraphs.txt", {"text_unit": "paragraph"}, "corpus", {}, 2, {"text": "First paragraph line one line two of it."}),
    ("paragraphs.txt", {"text_unit": "file"}, "corpus", {}, 1, {}),
    ("folder_splits", {}, "classification", {"label": "category"}, 2, {"text": "open an account"}),
    ("folder_splits", {"split": "test"}, "classification", {}, 1, {"text": "how to open an account"}),
]


@pytest.mark.parametrize("path,kwargs,fmt,mapping,rows,first", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_formats_load(path, kwargs, fmt, mapping, rows, first):
    ds = load_dataset(F + path, **kwargs)
    assert ds.format == fmt
    assert mapping.items() <= ds.columns.items()
    assert len(ds) == rows
    for key, value in first.items():
        assert ds.frame[key].iat[0] == value


def test_lines_point_at_the_record():
    ds = load_dataset(F + "pc.jsonl")
    assert ds.frame["_line"].tolist() == [1, 2, 4]  # the blank line 3 is skipped, not miscounted
    csv = load_dataset(F + "cls.csv")
    assert csv.frame["_line"].tolist() == [2, 3, 4, 6]  # the quoted field spans lines 4-5
    assert csv.where(3) == "tests/fixtures/formats/cls.csv:6"
    alpaca = load_dataset(F + "alpaca.json")
    assert alpaca.frame["_line"].tolist() == [2, 3, 4]
    nested = load_dataset(F + "nested.json")
    assert nested.frame["_line"].tolist() == [4, 5]


def test_chat_roles_are_canonical():
    ds = load_dataset(F + "sharegpt.json")
    roles = [[m["role"] for m in msgs] for msgs in ds.frame["messages"]]
    assert roles == [["user", "assistant"], ["system", "user", "assistant"]]
    assert ds.frame["messages"].iat[1][2]["content"] == "In the portal under Devices."


def test_metadata_columns_kept():
    ds = load_dataset(F + "pc.jsonl")
    assert "category" in ds.metadata_columns
    assert ds.frame["category"].iat[2] == "printers"


def test_folder_loads_the_train_split_and_says_so():
    ds = load_dataset(F + "folder_splits")
    assert any("loaded split 'train'" in n for n in ds.report.notes)
    with pytest.raises(DatasetError, match="no files for split 'validation'"):
        load_dataset(F + "folder_splits", split="validation")


def test_folder_of_same_format_files_concatenates(tmp_path):
    (tmp_path / "a.csv").write_text("text,label\nhi,greet\nhello,greet\n")
    (tmp_path / "b.jsonl").write_text('{"text": "bye", "label": "bye"}\n{"text": "ciao", "label": "bye"}\n')
    ds = load_dataset(tmp_path)
    assert ds.format == "classification" and len(ds) == 4
    assert sorted(set(ds.frame["_file"].map(lambda f: f.rsplit("/", 1)[-1]))) == ["a.csv", "b.jsonl"]


def test_folder_mixing_formats_is_an_error(tmp_path):
    (tmp_path / "a.csv").write_text("text,label\nhi,greet\n")
    (tmp_path / "b.jsonl").write_text('{"prompt": "q", "completion": "a"}\n')
    with pytest.raises(DatasetError, match="holds prompt_completion data but earlier files hold classification"):
        load_dataset(tmp_path)


def test_parquet_with_nested_messages(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"messages": [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}], "id": 1},
            {"messages": [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}], "id": 2}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "chat.parquet")
    ds = load_dataset(tmp_path / "chat.parquet")
    assert ds.format == "chat" and len(ds) == 2
    assert ds.frame["messages"].iat[1][1] == {"role": "assistant", "content": "a2"}
    assert ds.where(1).endswith("chat.parquet, row 1")


def test_saved_dataset_folder(tmp_path):
    import datasets

    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"prompt": ["a", "b"], "completion": ["x", "y"]}),
        "test": datasets.Dataset.from_dict({"prompt": ["c"], "completion": ["z"]}),
    })
    dd.save_to_disk(tmp_path / "saved")
    ds = load_dataset(tmp_path / "saved")
    assert ds.format == "prompt_completion" and len(ds) == 2
    assert load_dataset(tmp_path / "saved", split="test").frame["prompt"].tolist() == ["c"]
    single = datasets.Dataset.from_dict({"text": ["only"], "label": ["x"]})
    single.save_to_disk(tmp_path / "single")
    assert load_dataset(tmp_path / "single").format == "classification"


def test_dataframe_source_and_columns_override():
    df = pd.DataFrame({"utterance": ["a", "b"], "intent": ["x", "y"], "extra": [1, 2]})
    ds = load_dataset(df, columns={"text": "utterance", "label": "intent"})
    assert ds.format == "classification"
    assert ds.frame["text"].tolist() == ["a", "b"] and ds.frame["extra"].tolist() == [1, 2]
    assert ds.where(1) == "row 1"


def test_columns_override_names_the_closest_column():
    df = pd.DataFrame({"utterance": ["a"], "intent": ["x"]})
    with pytest.raises(DatasetError) as err:
        load_dataset(df, columns={"text": "utterence", "label": "intent"})
    assert "Did you mean 'utterance'?" in str(err.value)


def test_explicit_format_picks_among_ambiguous():
    df = pd.DataFrame({"text": ["t1", "t2"], "label": ["a", "b"], "prompt": ["p", "q"], "completion": ["c", "d"]})
    with pytest.raises(DatasetError) as err:
        load_dataset(df)
    msg = str(err.value)
    assert "prompt_completion" in msg and "classification" in msg and "format=" in msg
    assert load_dataset(df, format="classification").format == "classification"
    assert load_dataset(df, format="prompt_completion").frame["completion"].tolist() == ["c", "d"]


def test_forced_reader_for_wrong_extension(tmp_path):
    p = tmp_path / "export.dat"
    p.write_text('{"prompt": "q", "completion": "a"}\n')
    with pytest.raises(DatasetError, match="not a supported data format"):
        load_dataset(p)
    assert load_dataset(p, reader="jsonl").format == "prompt_completion"


def test_other_encodings(tmp_path):
    p = tmp_path / "latin.csv"
    p.write_bytes("text,label\ncaf\xe9 au lait,drink\nth\xe9,drink\n".encode("latin-1"))
    ds = load_dataset(p, encoding="latin-1")
    assert ds.frame["text"].tolist() == ["café au lait", "thé"]


def test_hub_name_offline_says_how_to_use_a_local_copy(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetError) as err:
        load_dataset("PolyAI/banking77")
    msg = str(err.value)
    assert "Hugging Face Hub cannot be reached" in msg
    assert "save_to_disk" in msg


def test_missing_path_is_not_taken_for_a_hub_name():
    with pytest.raises(DatasetError, match="no such file or folder"):
        load_dataset("tests/fixtures/formats/nope.csv")


def test_to_hf_roundtrip():
    ds = load_dataset(F + "chat.jsonl")
    hf = ds.to_hf()
    assert hf.column_names == ["messages"]
    assert hf[0]["messages"][0]["role"] == "system"


def test_fingerprint_changes_with_content_not_with_provenance(tmp_path):
    a = load_dataset(F + "cls.csv")
    (tmp_path / "copy.csv").write_text(open(F + "cls.csv").read())
    b = load_dataset(tmp_path / "copy.csv")
    assert a.fingerprint() == b.fingerprint()
    (tmp_path / "changed.csv").write_text(open(F + "cls.csv").read().replace("stolen", "robbed"))
    assert load_dataset(tmp_path / "changed.csv").fingerprint() != a.fingerprint()
