"""Benchmark: personal-data detection, precision and recall per kind, and scan speed, against Presidio.

    .venv/bin/python benchmarks/pii_benchmark.py                 # the workbench's default scan
    .venv/bin/python benchmarks/pii_benchmark.py --ner           # plus names (spaCy) and street addresses
    .venv/bin/python benchmarks/pii_benchmark.py --no-presidio   # skip Presidio even when installed

The set is ``benchmarks/data/pii_benchmark.jsonl`` (``benchmarks/pii_benchmark_data.py`` makes
it, seeded). Matching rule, the same for both detectors: a labelled span is found when a
detection of a compatible kind overlaps it; a detection is right when it overlaps a labelled
span of a compatible kind. Compatible: the same kind, or two kinds of secret (``password``,
``api_key``, ``url_credentials``, ``private_key``: a key after "token:" is a secret either way).

Presidio (``presidio-analyzer``, optional) runs on the same texts in the same process when it
is installed, with the first installed spaCy English model of ``workbench.data.pii_ner.MODELS``
(Presidio's default ``en_core_web_lg`` is not on the package index); its entity types map to
ours as ``PRESIDIO_KINDS`` says, the others (dates, URLs, ...) are ignored. Speed is texts per
second over the whole set, each detector's best of ``--repeat`` passes after one warm-up text
(the workbench's cache of phone look-ups emptied before each pass).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workbench.data.pii import DEFAULT_KINDS, KIND_NAMES, _phone_score, detect_pii  # noqa: E402
from workbench.data.pii_ner import MODELS, ner_available  # noqa: E402

DATA = Path(__file__).parent / "data" / "pii_benchmark.jsonl"
STRUCTURED = ("email", "phone", "credit_card", "iban", "ip_address", "url_credentials", "api_key", "password")
BOTH_COVER = ("email", "phone", "credit_card", "iban", "ip_address")
SECRETS = {"password", "api_key", "url_credentials", "private_key"}
PRESIDIO_KINDS = {"EMAIL_ADDRESS": "email", "PHONE_NUMBER": "phone", "CREDIT_CARD": "credit_card",
                  "IBAN_CODE": "iban", "IP_ADDRESS": "ip_address", "PERSON": "person", "LOCATION": "street_address"}


def compatible(a: str, b: str) -> bool:
    return a == b or (a in SECRETS and b in SECRETS)


def score(rows: list[dict], predictions: list[list[tuple[str, int, int]]], kinds: tuple[str, ...]) -> dict:
    """Per kind: labelled, found, detections, right; recall, precision, F1."""
    stats = {k: {"gold": 0, "found": 0, "pred": 0, "right": 0} for k in kinds}
    misses, false_alarms = [], []
    for row, pred in zip(rows, predictions):
        gold = [(s["kind"], s["start"], s["end"]) for s in row["spans"]]
        for k, s, e in gold:
            if k not in stats:
                continue
            stats[k]["gold"] += 1
            if any(compatible(k, pk) and ps < e and s < pe for pk, ps, pe in pred):
                stats[k]["found"] += 1
            else:
                misses.append((row["id"], k, row["text"][s:e]))
        for pk, ps, pe in pred:
            if pk not in stats:
                continue
            stats[pk]["pred"] += 1
            if any(compatible(k, pk) and ps < e and s < pe for k, s, e in gold):
                stats[pk]["right"] += 1
            else:
                false_alarms.append((row["id"], pk, row["text"][ps:pe]))
    out = {k: _prf(v) for k, v in stats.items()}
    for name, group in (("structured (8 kinds)", STRUCTURED), ("both cover (5 kinds)", BOTH_COVER)):
        total = {f: sum(stats[k][f] for k in group if k in stats) for f in ("gold", "found", "pred", "right")}
        out[name] = _prf(total)
    return {"per_kind": out, "misses": misses, "false_alarms": false_alarms}


def _prf(v: dict) -> dict:
    r = v["found"] / v["gold"] if v["gold"] else float("nan")
    p = v["right"] / v["pred"] if v["pred"] else float("nan")
    f = 2 * p * r / (p + r) if v["gold"] and v["pred"] and p + r else float("nan")
    return {**v, "recall": round(r, 3), "precision": round(p, 3), "f1": round(f, 3)}


def run_workbench(rows, kinds, region, repeat):
    texts = [r["text"] for r in rows]
    detect_pii(texts[0], kinds, region=region)  # warm-up (loads the NER model when asked)
    best = float("inf")
    for _ in range(repeat):
        _phone_score.cache_clear()  # each pass cold: no number looked up before
        t0 = time.perf_counter()
        preds = [[(d.kind, d.start, d.end) for d in detect_pii(t, kinds, region=region)] for t in texts]
        best = min(best, time.perf_counter() - t0)
    return preds, best


def presidio_model() -> str | None:
    return next((m for m in MODELS if importlib.util.find_spec(m) is not None), None)


def run_presidio(rows, repeat):
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    model = presidio_model()
    provider = NlpEngineProvider(nlp_configuration={"nlp_engine_name": "spacy",
                                                    "models": [{"lang_code": "en", "model_name": model}]})
    engine = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])
    texts = [r["text"] for r in rows]
    engine.analyze(texts[0], language="en")
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        results = [engine.analyze(t, language="en") for t in texts]
        best = min(best, time.perf_counter() - t0)
    preds = [[(PRESIDIO_KINDS[x.entity_type], x.start, x.end) for x in res if x.entity_type in PRESIDIO_KINDS]
             for res in results]
    return preds, best, model


def table(name: str, result: dict, kinds) -> list[str]:
    lines = [f"{name}", f"  {'kind':<22} {'labelled':>8} {'recall':>7} {'detections':>10} {'precision':>9} {'F1':>6}"]
    for k in list(kinds) + ["structured (8 kinds)", "both cover (5 kinds)"]:
        v = result["per_kind"].get(k)
        if v:
            lines.append(f"  {k:<22} {v['gold']:>8} {v['recall']:>7.3f} {v['pred']:>10} {v['precision']:>9.3f} {v['f1']:>6.3f}")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--ner", action="store_true", help="also names (spaCy) and street addresses")
    ap.add_argument("--no-presidio", action="store_true")
    ap.add_argument("--region", default="US")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--show", type=int, default=15, help="misses and false alarms to print")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    if not args.data.exists():
        print(f"{args.data} is missing: run benchmarks/pii_benchmark_data.py first")
        return 2
    rows = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines()]
    kinds = KIND_NAMES if args.ner else DEFAULT_KINDS
    if args.ner and not ner_available():
        print("--ner: spaCy or its English model is not installed (pip install -e '.[ner]')")
        return 2
    n_spans = sum(len(r["spans"]) for r in rows)
    print(f"{len(rows)} texts, {n_spans} labelled spans; machine {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}")
    report_kinds = STRUCTURED + (("person", "street_address") if args.ner else ())
    preds, secs = run_workbench(rows, kinds, args.region, args.repeat)
    ours = score(rows, preds, report_kinds)
    print("\n".join(table(f"workbench (kinds: {', '.join(kinds)})", ours, report_kinds)))
    print(f"  speed: {len(rows) / secs:,.0f} texts/s ({secs * 1000:.0f} ms for the set)")
    out = {"texts": len(rows), "spans": n_spans, "workbench": {"per_kind": ours["per_kind"], "seconds": secs}}
    for label, items in (("misses", ours["misses"]), ("false alarms", ours["false_alarms"])):
        print(f"  {label}: {len(items)}")
        for rid, k, v in items[:args.show]:
            print(f"    {rid:<16} {k:<16} {v!r}")
    if args.no_presidio:
        pass
    elif importlib.util.find_spec("presidio_analyzer") is None:
        print("\nPresidio: not installed (pip install presidio-analyzer spacy and an English spaCy model); skipped")
    elif presidio_model() is None:
        print(f"\nPresidio: installed, but no English spaCy model ({', '.join(MODELS)}) is; skipped")
    else:
        p_preds, p_secs, model = run_presidio(rows, max(1, args.repeat - 2))
        p_kinds = STRUCTURED + ("person", "street_address")  # the secrets it does not cover count as missed
        theirs = score(rows, p_preds, p_kinds)
        print()
        print("\n".join(table(f"Presidio analyzer (spaCy {model})", theirs, p_kinds)))
        print(f"  speed: {len(rows) / p_secs:,.0f} texts/s ({p_secs * 1000:.0f} ms for the set)")
        ratio = p_secs / secs
        print(f"\nworkbench scan {ratio:.0f}x faster than Presidio's analyzer on the same texts"
              + (" (with the NER model on both sides)" if args.ner else " (workbench without NER)"))
        f_ours = ours["per_kind"]["both cover (5 kinds)"]["f1"]
        f_theirs = theirs["per_kind"]["both cover (5 kinds)"]["f1"]
        print(f"F1 on the five kinds both cover: workbench {f_ours:.3f}, Presidio {f_theirs:.3f}")
        out["presidio"] = {"model": model, "per_kind": theirs["per_kind"], "seconds": p_secs, "speed_ratio": ratio}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
