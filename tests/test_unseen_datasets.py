"""Datasets the loader has never seen load with the right format detected.

The files under ``fixtures/unseen/`` copy the shapes of well-known public datasets (alpaca,
dolly, ShareGPT, OpenAI fine-tuning chat, OpenAssistant, SST-2, AG News, SMS spam, IMDB,
banking intents, GSM8K, OpenOrca, no_robots, Bitext, MASSIVE, SAMSum, XSum) and of real
team exports (support tickets, search logs, chat logs with JSON in a CSV column, headers
with stray case and spaces). The content is written for these tests, a few records per file.

Each case says which format must be detected, which source column must feed each canonical
field, how many rows must load (strictly: none dropped), and which metadata columns must be
kept. Cases the loader gets wrong today are marked ``xfail(strict=True)`` with the reason, so
that fixing the loader turns them into failures that ask for the mark to be removed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from workbench.data import FORMATS, DatasetError, load_dataset
from workbench.data.formats import ROLES

UNSEEN = Path(__file__).resolve().parent / "fixtures" / "unseen"

#: Parquet files made at test time from a JSONL fixture (the name the test loads -> the JSONL).
PARQUET_FROM = {
    "no_robots_chat.parquet": "no_robots_chat.jsonl",
    "sst2_validation.parquet": "sst2_validation.jsonl",
}


def _xfail(reason: str, raises: type[BaseException] = DatasetError):
    return pytest.mark.xfail(strict=True, raises=raises, reason=reason)


# file, load kwargs, expected format, expected canonical -> source mapping (subset), rows,
# metadata columns that must be kept (exactly: nothing lost, nothing invented)
CASES = [
    # ---- instruction
    pytest.param("alpaca_data.json", {}, "instruction",
                 {"instruction": "instruction", "input": "input", "output": "output"}, 7, {"text"},
                 id="alpaca-json-array"),
    pytest.param("databricks_dolly.jsonl", {}, "instruction",
                 {"instruction": "instruction", "input": "context", "output": "response"}, 7, {"category"},
                 id="dolly-jsonl"),
    pytest.param("bitext_customer_support.csv", {}, "instruction",
                 {"instruction": "instruction", "output": "response"}, 6, {"flags", "category", "intent"},
                 id="bitext-support-csv"),
    # ---- chat
    pytest.param("sharegpt_vicuna.json", {}, "chat", {"messages": "conversations"}, 5, {"id"},
                 id="sharegpt-from-value"),
    pytest.param("openai_finetune_chat.jsonl", {}, "chat", {"messages": "messages"}, 6, set(),
                 id="openai-finetune-chat"),
    pytest.param("oasst_content_parts.jsonl", {}, "chat", {"messages": "messages"}, 5, {"message_tree_id", "lang"},
                 id="oasst-content-parts"),
    pytest.param("no_robots_chat.jsonl", {}, "chat", {"messages": "messages"}, 5,
                 {"prompt", "prompt_id", "category"}, id="no-robots-jsonl"),
    pytest.param("no_robots_chat.parquet", {}, "chat", {"messages": "messages"}, 5,
                 {"prompt", "prompt_id", "category"}, id="no-robots-parquet"),
    pytest.param("chat_export_json_column.csv", {}, "chat", {"messages": "messages"}, 5,
                 {"conversation_id", "rating", "agent"}, id="chat-log-csv-json-column"),
    # ---- prompt / completion
    pytest.param("support_tickets_export.csv", {}, "prompt_completion", {"prompt": "question", "completion": "answer"},
                 6, {"id", "created_at", "priority", "channel"}, id="support-tickets-csv"),
    pytest.param("search_query_response.jsonl", {}, "prompt_completion", {"prompt": "query", "completion": "response"},
                 6, {"session_id", "latency_ms"}, id="query-response-jsonl"),
    pytest.param("translation_en_de.json", {}, "prompt_completion", {"prompt": "source", "completion": "target"},
                 6, {"domain"}, id="translation-json-under-data-key"),
    pytest.param("openorca_sample.jsonl", {}, "prompt_completion", {"prompt": "question", "completion": "response"},
                 5, {"id", "system_prompt"}, id="openorca-jsonl"),
    pytest.param("gsm8k_nested_splits.json", {"field": "data.train"}, "prompt_completion",
                 {"prompt": "question", "completion": "answer"}, 5, set(), id="gsm8k-json-field-dotted"),
    pytest.param("mixed_case_headers.csv", {}, "prompt_completion", {"prompt": "Prompt", "completion": "Completion"},
                 5, {"Reviewer"}, id="header-case-space-csv"),
    pytest.param("mixed_case_headers.jsonl", {}, "prompt_completion",
                 {"prompt": " Prompt ", "completion": "COMPLETION "}, 5, {"Split"}, id="header-case-space-jsonl"),
    # ---- classification
    pytest.param("sst2_train.tsv", {}, "classification", {"text": "sentence", "label": "label"}, 10, set(),
                 id="sst2-tsv"),
    pytest.param("sst2_validation.parquet", {}, "classification", {"text": "sentence", "label": "label"}, 8, {"idx"},
                 id="sst2-parquet-int-labels"),
    pytest.param("ag_news_train.csv", {}, "classification", {"text": "text", "label": "label"}, 8, set(),
                 id="ag-news-csv-numeric-labels"),
    pytest.param("sms_spam_collection.tsv", {}, "classification", {"text": "message", "label": "label"}, 10, set(),
                 id="sms-spam-tsv-message-column"),
    pytest.param("banking_intents.csv", {}, "classification", {"text": "utterance", "label": "intent"}, 10, set(),
                 id="intent-csv"),
    pytest.param("imdb_reviews.csv", {}, "classification", {"text": "review", "label": "sentiment"}, 6, set(),
                 id="imdb-review-sentiment-csv"),
    pytest.param("emotion_columnar.json", {}, "classification", {"text": "text", "label": "label"}, 8, {"label_text"},
                 id="emotion-columnar-json"),
    # ---- corpus
    pytest.param("handbook_corpus.txt", {}, "corpus", {"text": "text"}, 8, set(), id="corpus-txt"),
    pytest.param("crawl_content_only.jsonl", {}, "corpus", {"text": "content"}, 6, set(), id="corpus-jsonl-content"),
    # ---- detection overridden with columns=
    pytest.param("team_forum_posts.csv", {"columns": {"text": "body", "label": "tag"}}, "classification",
                 {"text": "body", "label": "tag"}, 7, {"id", "author"}, id="override-body-tag"),
    pytest.param("massive_en_us.jsonl", {"columns": {"text": "utt", "label": "intent"}}, "classification",
                 {"text": "utt", "label": "intent"}, 6, {"id", "locale", "partition", "scenario", "annot_utt"},
                 id="override-massive-utt-intent"),
    pytest.param("ag_news_kaggle.csv", {"columns": {"text": "Description", "label": "Class Index"}}, "classification",
                 {"text": "Description", "label": "Class Index"}, 6, {"Title"}, id="override-ag-news-kaggle"),
    pytest.param("samsum_dialogues.json", {"columns": {"prompt": "dialogue", "completion": "summary"}},
                 "prompt_completion", {"prompt": "dialogue", "completion": "summary"}, 5, {"id"},
                 id="override-samsum"),
    pytest.param("xsum_summaries.jsonl", {"columns": {"prompt": "document", "completion": "summary"}},
                 "prompt_completion", {"prompt": "document", "completion": "summary"}, 5, {"id"},
                 id="override-xsum"),
    # ---- shapes that needed loader changes when this corpus was written
    pytest.param("samsum_dialogues.json", {}, "prompt_completion", {"prompt": "dialogue", "completion": "summary"},
                 5, {"id"}, id="samsum-auto"),
    pytest.param("xsum_summaries.jsonl", {}, "prompt_completion", {"prompt": "document", "completion": "summary"},
                 5, {"id"}, id="xsum-auto"),
    pytest.param("openai_finetune_tool_calls.jsonl", {}, "chat", {"messages": "messages"}, 5, {"tools"},
                 id="openai-tool-calls"),
    pytest.param("sharegpt_function_calling.json", {}, "chat", {"messages": "conversations"}, 5, {"system", "tools"},
                 id="sharegpt-function-call-role"),
    pytest.param("openai_api_log_developer_role.jsonl", {}, "chat", {"messages": "messages"}, 5, {"metadata"},
                 id="openai-developer-role"),
    pytest.param("pandas_to_json_default.json", {}, "classification", {"text": "text", "label": "label"}, 6, set(),
                 id="pandas-to-json-orient-columns"),
    pytest.param("sms_spam_quoted.tsv", {}, "classification", {"text": "message", "label": "label"}, 8, set(),
                 id="sms-tsv-leading-quote"),
]


def _source(name: str, tmp_path: Path) -> Path:
    if name not in PARQUET_FROM:
        return UNSEEN / name
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in (UNSEEN / PARQUET_FROM[name]).read_text(encoding="utf-8").splitlines()
            if line.strip()]
    out = tmp_path / name
    pq.write_table(pa.Table.from_pylist(rows), out)
    return out


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _check_canonical(ds) -> None:
    for field in FORMATS[ds.format].fields:
        assert field in ds.frame.columns, f"canonical column {field!r} missing"
        for i, value in enumerate(ds.frame[field].tolist()):
            where = f"{field} of row {i}"
            if field == "label":
                assert not _missing(value) and not isinstance(value, bool), where
                assert isinstance(value, int) or (isinstance(value, str) and value.strip()), f"{where}: {value!r}"
            elif field == "messages":
                assert isinstance(value, list) and value, where
                for m in value:
                    assert isinstance(m, dict) and {"role", "content"} <= set(m), f"{where}: {m!r}"
                    assert m["role"] in ROLES, f"{where}: role {m['role']!r}"
                    assert isinstance(m["content"], str), f"{where}: {m!r}"
                    assert m["content"].strip() or m["role"] == "assistant", f"{where}: empty {m['role']} turn"
                assert any(m["role"] == "assistant" for m in value), where
            elif field in ds.spec.optional:
                assert isinstance(value, str), f"{where}: {value!r}"
            else:
                assert isinstance(value, str) and value.strip(), f"{where}: {value!r}"


@pytest.mark.parametrize("name,kwargs,fmt,mapping,rows,meta", CASES)
def test_unseen_dataset_loads(name, kwargs, fmt, mapping, rows, meta, tmp_path):
    ds = load_dataset(_source(name, tmp_path), **kwargs)

    assert ds.format == fmt
    assert mapping.items() <= ds.columns.items(), ds.columns
    assert len(ds) == rows
    assert ds.report.rows_read == rows and not ds.report.errors
    _check_canonical(ds)
    assert set(ds.metadata_columns) == meta
    for col in meta:
        assert ds.frame[col].map(lambda v: not _missing(v)).all(), f"metadata column {col!r} has lost values"


def test_optional_input_stays_empty_not_dropped():
    alpaca = load_dataset(UNSEEN / "alpaca_data.json")
    assert alpaca.frame["input"].tolist().count("") == 3
    assert alpaca.frame["input"].iat[1] == "Where is the train station?"
    dolly = load_dataset(UNSEEN / "databricks_dolly.jsonl")
    assert dolly.frame["input"].tolist().count("") == 4
    assert dolly.frame["category"].iat[0] == "closed_qa"


def test_chat_shapes_normalise_roles_and_content():
    share = load_dataset(UNSEEN / "sharegpt_vicuna.json")
    assert [m["role"] for m in share.frame["messages"].iat[1]] == ["system", "user", "assistant", "user", "assistant"]
    oasst = load_dataset(UNSEEN / "oasst_content_parts.jsonl")
    turns = oasst.frame["messages"].iat[2]
    assert turns[1]["content"] == "Give me two tips for writing clear commit messages."  # parts joined
    csv_chat = load_dataset(UNSEEN / "chat_export_json_column.csv")
    assert csv_chat.frame["messages"].iat[1][0] == {"role": "system", "content": "You are the billing assistant."}


def test_metadata_values_survive():
    tickets = load_dataset(UNSEEN / "support_tickets_export.csv")
    assert tickets.frame[["id", "priority"]].iloc[0].tolist() == ["TCK-10231", "high"]
    assert tickets.frame["created_at"].iat[-1] == "2024-03-06T10:02:11Z"
    headers = load_dataset(UNSEEN / "mixed_case_headers.jsonl")
    assert headers.frame["completion"].iat[0] == " Au"  # leading space of a legacy completion is kept


@pytest.mark.parametrize("name", ["massive_en_us.jsonl", "ag_news_kaggle.csv"])
def test_unknown_columns_ask_for_columns(name):
    with pytest.raises(DatasetError) as err:
        load_dataset(UNSEEN / name)
    (problem,) = err.value.problems
    assert problem.kind == "unknown_format"
    assert "columns=" in problem.fix
