"""Compare panels: models side by side on an input, metrics with intervals, disagreements.

``ComparePanel`` is for causal LMs (outputs with differences highlighted, and a chat in which the
picked models answer side by side, streaming, with Stop); ``ClassifierComparePanel`` for
classifiers (each model's most probable labels, per-class changes).
"""

from __future__ import annotations

import difflib
import html
import random
import threading
import time
from dataclasses import replace
from typing import Callable

import ipywidgets as widgets
import pandas as pd

from ..compare import (ModelSet, compare_classifiers, compare_generators, decoding_settings, degenerate_warnings,
                       disagreement, generate, generate_stream, load_generator, per_class_table,
                       prompts_and_references, shown_differences, top_labels)
from ..config import CompareConfig, TokenConfig
from ..errors import Cancelled
from ..data.dataset import LoadedDataset
from ..templates import generation_prompt
from .base import Panel, form_field


def diff_html(text: str, reference: str) -> str:
    """``text`` with the words that differ from ``reference`` highlighted."""
    a, b = reference.split(), text.split()
    out = []
    for op, _, _, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        words = html.escape(" ".join(b[j1:j2]))
        if not words:
            continue
        out.append(words if op == "equal" else f'<mark class="wb-diff">{words}</mark>')
    return " ".join(out)


def _common_widgets(names: list[str], selected: list[str], test, placeholder: str, action: str, height: str):
    """What both compare panels show: model picker, input box, Sample and action buttons, output
    columns, status, and the Score button with its table (CSS classes the browser tests use)."""
    pick = widgets.SelectMultiple(options=names, value=tuple(selected), description="Models", rows=min(5, len(names)))
    box = widgets.Textarea(placeholder=f"{placeholder}, or sample one from the test split",
                           layout=widgets.Layout(width="60%", height=height))
    sample = widgets.Button(description="Sample from test", disabled=test is None)
    run = widgets.Button(description=action, button_style="primary")
    columns, status = widgets.HBox(), widgets.HTML()
    score = widgets.Button(description="Score on the test split", disabled=test is None)
    metrics = widgets.HTML()
    for w, css in [(pick, "wb-pick"), (box, "wb-prompt"), (sample, "wb-sample"), (run, "wb-generate"),
                   (columns, "wb-outputs"), (status, "wb-compare-status"), (score, "wb-score"), (metrics, "wb-metrics")]:
        w.add_class(css)
    return pick, box, sample, run, columns, status, score, metrics


class ScoreProgress:
    """Scoring's progress bar, status line and Cancel button, which sit beside the button that started it (scoring
    takes minutes). ``stop`` is the event the core function hears; ``widget`` the row to show."""

    def __init__(self):
        self.bar = widgets.FloatProgress(value=0, min=0, max=1, description="scoring",
                                         layout=widgets.Layout(visibility="hidden"))
        self.status = widgets.HTML()
        self.cancel_btn = widgets.Button(description="Cancel", button_style="warning", disabled=True,
                                         tooltip="Stop scoring (nothing half-scored is kept)")
        for w, css in [(self.bar, "wb-score-progress"), (self.status, "wb-score-status"),
                       (self.cancel_btn, "wb-score-cancel")]:
            w.add_class(css)
        self.stop = threading.Event()
        self.cancel_btn.on_click(lambda _: self.cancel())

    def begin(self) -> None:
        self.stop.clear()
        self.cancel_btn.disabled = False
        self.bar.layout.visibility = "visible"
        self.update("starting", 0.0)

    def update(self, message: str, share: float) -> None:
        """``progress(message, share)`` for ``compare_generators`` and ``compare_classifiers``."""
        self.bar.value = share
        self.status.value = f"<i>{html.escape(message)}</i>"

    def cancel(self) -> None:
        """Stop scoring at the next chance; nothing half-scored is shown."""
        self.stop.set()
        self.cancel_btn.disabled = True
        self.status.value = "<i>Cancelling…</i>"

    def finish(self, message: str = "") -> None:
        self.cancel_btn.disabled = True
        self.bar.layout.visibility = "hidden"
        self.status.value = message


CANCELLED = "<i class='wb-score-cancelled'>Cancelled; no scores were kept.</i>"


def _decoding_words(settings: dict) -> str:
    """``decoding_settings`` as a few words for an answer's footer."""
    how = (f"sampling, temperature {settings['temperature']:g}, top-p {settings['top_p']:g}"
           if settings["do_sample"] else "greedy")
    penalty = (f", repetition penalty {settings['repetition_penalty']:g}" if settings.get("repetition_penalty")
               else "")
    return f"{how}{penalty}, at most {settings['max_new_tokens']} new tokens"


class ComparePanel(Panel):
    """Compare causal LMs (a base, adapters, merged exports) on prompts, in a chat, and on a test split.

    The Chat tab sends each message to every model picked there; their answers stream in side by
    side (one model after the other, in a worker thread), and Stop ends the one being generated and
    skips the rest. Each answer is kept in ``history`` with the decoding settings of the form.

    Args:
        models: Display name to a model folder (full, merged, or an adapter).
        test: A test split with reference answers, for sampling prompts and for metrics.
        cfg: Decoding and bootstrap settings (the chat's form starts from its decoding settings).
        loader, generator, comparer, streamer: The core functions ``load_generator``, ``generate``,
            ``compare_generators`` and ``generate_stream`` (tests pass stubs).
    """

    def __init__(self, models: dict[str, str], test: LoadedDataset | None = None, cfg: CompareConfig = CompareConfig(),
                 loader: Callable = load_generator, generator: Callable = generate,
                 comparer: Callable = compare_generators, device: str = "cpu", streamer: Callable = generate_stream):
        if not models:
            raise ValueError("ComparePanel needs at least one model")
        self.models, self.test, self.cfg = dict(models), test, cfg
        self._load, self._generate, self._compare, self.device = loader, generator, comparer, device
        self._stream = streamer
        self._cache: dict[str, tuple] = {}
        self.outputs: dict[str, str] = {}
        self.comparison = None
        self.history: list[dict] = []
        """The chat: ``{"role": "user", "content"}`` for each message, then one ``{"role": "assistant",
        "model", "content", "settings", "new_tokens", "seconds", "stopped"}`` per picked model."""
        self._stop = threading.Event()
        self._live: dict | None = None
        names = list(models)

        (self.pick, self.prompt, self.sample_btn, self.generate_btn, self.columns, self.status, self.metrics_btn,
         self.metrics_html) = _common_widgets(names, names[:2], test, "Type a prompt", "Generate", "90px")
        self.reference = widgets.HTML()
        self.examples_html = widgets.HTML("<i>Score the models to browse the examples where they disagree most.</i>")

        self.chat_pick = widgets.SelectMultiple(options=names, value=tuple(names[:2]), description="Chat with",
                                                rows=min(5, len(names)))
        self.decoding = form_field(widgets.ToggleButtons, CompareConfig, "do_sample", cfg.do_sample, label="decoding",
                                   options=[("greedy", False), ("sampling", True)])
        self.temperature = form_field(widgets.BoundedFloatText, CompareConfig, "temperature", cfg.temperature,
                                      min=0.01, max=5.0, step=0.1, layout=widgets.Layout(width="190px"),
                                      style={"description_width": "initial"})
        self.top_p = form_field(widgets.BoundedFloatText, CompareConfig, "top_p", cfg.top_p, label="top-p",
                                min=0.01, max=1.0, step=0.05, layout=widgets.Layout(width="150px"),
                                style={"description_width": "initial"})
        self.max_new_tokens = form_field(widgets.BoundedIntText, CompareConfig, "max_new_tokens", cfg.max_new_tokens,
                                         label="max new tokens", min=1, max=8192, layout=widgets.Layout(width="230px"),
                                         style={"description_width": "initial"})
        self.repetition_penalty = form_field(widgets.BoundedFloatText, CompareConfig, "repetition_penalty",
                                             cfg.repetition_penalty, label="repetition penalty", min=1.0, max=3.0,
                                             step=0.05, layout=widgets.Layout(width="230px"),
                                             style={"description_width": "initial"})
        self.form = {(CompareConfig, "do_sample"): self.decoding, (CompareConfig, "temperature"): self.temperature,
                     (CompareConfig, "top_p"): self.top_p, (CompareConfig, "max_new_tokens"): self.max_new_tokens,
                     (CompareConfig, "repetition_penalty"): self.repetition_penalty}
        self.decoding.observe(lambda _: self._sampling_fields(), "value")
        self._sampling_fields()
        self.chat_log = widgets.HTML()
        self.chat_input = widgets.Text(placeholder="Ask the models something…", layout=widgets.Layout(width="60%"))
        self.send_btn = widgets.Button(description="Send", button_style="primary")
        self.stop_btn = widgets.Button(description="Stop", button_style="danger", disabled=True)
        self.clear_btn = widgets.Button(description="Clear")
        self.chat_status = widgets.HTML()
        for w, css in [(self.chat_pick, "wb-chat-pick"), (self.decoding, "wb-chat-decoding"),
                       (self.temperature, "wb-chat-temperature"), (self.top_p, "wb-chat-top-p"),
                       (self.max_new_tokens, "wb-chat-max-new-tokens"),
                       (self.repetition_penalty, "wb-chat-repetition-penalty"), (self.chat_log, "wb-chat-log"),
                       (self.chat_input, "wb-chat-input"), (self.send_btn, "wb-send"), (self.stop_btn, "wb-chat-stop"),
                       (self.clear_btn, "wb-chat-clear"), (self.chat_status, "wb-chat-status")]:
            w.add_class(css)

        self.sample_btn.on_click(lambda _: self.sample())
        self.generate_btn.on_click(lambda _: self.start_generate())
        self.metrics_btn.on_click(lambda _: self.start_score())
        self.send_btn.on_click(lambda _: self.start_chat())
        self.stop_btn.on_click(lambda _: self.stop_chat())
        self.clear_btn.on_click(lambda _: self.clear_chat())

        prompt_tab = widgets.VBox([widgets.HBox([self.pick, self.prompt]),
                                   widgets.HBox([self.sample_btn, self.generate_btn, self.status]),
                                   self.reference, self.columns])
        self.scoring = ScoreProgress()
        self.score_progress, self.score_status, self.cancel_btn = (self.scoring.bar, self.scoring.status,
                                                                   self.scoring.cancel_btn)
        scored_on = (f"Scores the {len(test):,} rows of {html.escape(test.source)}" if test is not None
                     else "No test split to score on")
        metrics_tab = widgets.VBox([widgets.HBox([self.metrics_btn, self.cancel_btn, self.score_progress]),
                                    widgets.HTML(f"<small>{scored_on}.</small>"), self.score_status,
                                    self.metrics_html])
        settings = widgets.VBox([self.decoding, widgets.HBox([self.temperature, self.top_p, self.max_new_tokens,
                                                              self.repetition_penalty])])
        chat_tab = widgets.VBox([widgets.HBox([self.chat_pick, settings]), self.chat_log,
                                 widgets.HBox([self.chat_input, self.send_btn, self.stop_btn, self.clear_btn]),
                                 self.chat_status])
        self.tabs = widgets.Tab(children=[prompt_tab, metrics_tab, self.examples_html, chat_tab])
        for i, t in enumerate(["Side by side", "Metrics", "Disagreements", "Chat"]):
            self.tabs.set_title(i, t)
        self.widget = widgets.VBox([self.tabs])
        self.widget.add_class("wb-compare-panel")

    # ------------------------------------------------------------------ models

    def model(self, name: str):
        if name not in self._cache:
            self._cache[name] = self._load(self.models[name], self.device)
        return self._cache[name]

    def _busy(self, flag: bool, message: str = "") -> None:
        for b in (self.generate_btn, self.metrics_btn, self.send_btn, self.clear_btn):
            b.disabled = flag or (b is self.metrics_btn and self.test is None)
        self.status.value = f"<i>{html.escape(message)}</i>" if message else ""

    # ------------------------------------------------------------------ side by side

    def sample(self, row: int | None = None) -> int:
        """Put a test example's prompt in the box (and its reference below)."""
        row = random.randrange(len(self.test)) if row is None else row
        rec = self.test.frame[list(self.test.fields)].iloc[row].to_dict()
        self.prompt.value = self.test.spec.prompt_text(rec)
        _, refs = prompts_and_references(self.test.with_frame(self.test.frame.iloc[[row]]), _TextOnlyTok())
        self.reference.value = f"<b>Reference</b> ({html.escape(self.test.where(row))}): {html.escape(refs[0])}"
        return row

    def start_generate(self):
        names = list(self.pick.value)
        if not names or not self.prompt.value.strip():
            self.status.value = "<i>Pick at least one model and type a prompt.</i>"
            return None
        self._busy(True, "Generating…")
        text = self.prompt.value

        def work():
            try:
                for name in names:
                    model, tok = self.model(name)
                    prompt = generation_prompt([{"role": "user", "content": text}], tok, TokenConfig())
                    self.outputs[name] = self._generate(model, tok, [prompt], self.cfg)[0].text
                self.render_outputs(names)
                self._busy(False)
            except Exception as e:  # noqa: BLE001 - shown in the panel
                self._busy(False)
                self.status.value = self.error_html(e)

        return self._start(work, "compare-generate")

    def render_outputs(self, names: list[str]) -> None:
        first = self.outputs.get(names[0], "")
        boxes = []
        for i, name in enumerate(names):
            out = self.outputs.get(name, "")
            body = html.escape(out) if i == 0 else diff_html(out, first)
            boxes.append(widgets.HTML(
                f'<div class="wb-output" data-model="{html.escape(name)}" style="border:1px solid #ccc;padding:6px;'
                f'min-width:260px;max-width:480px;white-space:pre-wrap;overflow-wrap:anywhere"><b>{html.escape(name)}</b><br>{body}</div>'))
        self.columns.children = boxes

    # ------------------------------------------------------------------ metrics

    def cancel_score(self) -> None:
        """Stop scoring within a token; nothing half-scored is shown."""
        self.scoring.cancel()

    def start_score(self):
        names = list(self.pick.value) or list(self.models)
        self._busy(True, "Scoring on the test split (progress in the Metrics tab)…")
        self.scoring.begin()

        def finish(message: str = "") -> None:
            self._busy(False)
            self.scoring.finish(message)

        def work():
            try:
                self.comparison = c = self._compare(self.test, {n: self.models[n] for n in names}, names[0], self.cfg,
                                                    self.device, progress=self.scoring.update, stop=self.scoring.stop)
                cols = [m for m in self.cfg.metrics if m in c.metrics.columns] + [
                    x for x in ("reference_perplexity", "tokens_per_s", "seconds_per_example", "degenerate")
                    if x in c.metrics.columns]
                warnings = "".join(f'<p class="wb-warning" style="color:#b00">Warning: {html.escape(w)}</p>'
                                   for w in degenerate_warnings(c))
                self.metrics_html.value = (warnings + c.metrics[cols].round(4).to_html()
                                           + f"<h4>Against {html.escape(c.reference)} (paired bootstrap, "
                                           f"{self.cfg.confidence:.0%} interval)</h4>"
                                           + shown_differences(c).round(4).to_html(index=False))
                top = disagreement(c).head(20)
                keep = ["where", "prompt", "reference"] + [x for x in top.columns if x.startswith("output:")] + ["spread"]
                self.examples_html.value = top[keep].to_html(index=False, classes="wb-disagreements")
                finish(f"Scored {len(c.examples):,} examples.")
            except Cancelled:
                finish(CANCELLED)
            except Exception as e:  # noqa: BLE001
                finish()
                self.metrics_html.value = self.error_html(e)

        return self._start(work, "compare-score")

    # ------------------------------------------------------------------ chat

    def _sampling_fields(self) -> None:
        self.temperature.disabled = self.top_p.disabled = not self.decoding.value

    def chat_cfg(self) -> CompareConfig:
        """The decoding settings of the chat's form."""
        return replace(self.cfg, **self.form_values(CompareConfig))

    def start_chat(self):
        """Send the typed message to every model picked in the Chat tab, one after the other, streaming."""
        text, names = self.chat_input.value.strip(), list(self.chat_pick.value)
        if not text or not names:
            self.chat_status.value = "<i>Pick at least one model and type a message.</i>"
            return None
        cfg = self.chat_cfg()
        settings = decoding_settings(cfg)
        self.chat_input.value = ""
        self.history.append({"role": "user", "content": text})
        self._stop.clear()
        self._busy(True)
        self.stop_btn.disabled = False
        self._render_chat()

        def work():
            try:
                for name in names:
                    messages = self._messages(name)
                    answer = {"role": "assistant", "model": name, "content": "", "settings": settings,
                              "new_tokens": 0, "seconds": 0.0, "stopped": self._stop.is_set()}
                    self.history.append(answer)
                    if answer["stopped"]:  # Stop skips the models still waiting
                        continue
                    self.chat_status.value = f"<i>{html.escape(name)} is answering…</i>"
                    model, tok = self.model(name)
                    prompt = generation_prompt(messages, tok, TokenConfig())
                    self._live, shown = answer, [0.0]

                    def on_token(so_far: str, tokens: int, answer=answer, shown=shown) -> None:
                        answer["content"], answer["new_tokens"] = so_far, tokens
                        if time.monotonic() - shown[0] > 0.1:  # redraw at most ten times a second
                            shown[0] = time.monotonic()
                            self._render_chat()

                    g = self._stream(model, tok, prompt, cfg, stop=self._stop, on_token=on_token)
                    answer.update(content=g.text, new_tokens=g.new_tokens, seconds=g.seconds, stopped=g.stopped)
                    self._live = None
                    self._render_chat()
                stopped = self._stop.is_set()
                self._chat_done("Stopped." if stopped else "")
            except Exception as e:  # noqa: BLE001 - shown in the panel
                self._chat_done()
                self.chat_status.value = self.error_html(e)

        return self._start(work, "compare-chat")

    def _chat_done(self, message: str = "") -> None:
        self._live = None
        self._render_chat()
        # Stop and the status first, Send last: a message sent the moment Send comes back owns them.
        self.stop_btn.disabled = True
        self.chat_status.value = f"<i>{html.escape(message)}</i>" if message else ""
        self._busy(False)

    def stop_chat(self) -> None:
        """End the answer being generated and skip the models still waiting."""
        self._stop.set()

    def _messages(self, name: str) -> list[dict]:
        """The conversation as model ``name`` had it: every message, and its own answers."""
        return [{"role": m["role"], "content": m["content"]} for m in self.history
                if m["role"] == "user" or (m.get("model") == name and m["content"])]  # no empty (skipped) turns

    def clear_chat(self) -> None:
        self.history = []
        self._render_chat()

    def _render_chat(self) -> None:
        turns: list[list[str]] = []
        for m in list(self.history):
            if m["role"] == "user":
                turns.append([f'<div class="wb-chat-user"><b>You:</b> {html.escape(m["content"])}</div>'])
                continue
            state = "answering" if m is self._live else "stopped" if m["stopped"] else "done"
            meta = {"answering": f"{m['new_tokens']} tokens so far…",
                    "stopped": f"stopped after {m['new_tokens']} tokens",
                    "done": f"{m['new_tokens']} tokens in {m['seconds']:.1f} s"}[state]
            meta += f" · {_decoding_words(m['settings'])}"
            turns[-1].append(
                f'<div class="wb-chat-answer" data-model="{html.escape(m["model"])}" data-state="{state}" '
                f'style="border:1px solid #ccc;padding:6px;min-width:240px;max-width:480px;white-space:pre-wrap">'
                f'<b>{html.escape(m["model"])}</b><br>{html.escape(m["content"])}'
                f'<div class="wb-chat-meta" style="color:#777;font-size:11px">{html.escape(meta)}</div></div>')
        self.chat_log.value = "".join(
            f'<div class="wb-chat-turn">{t[0]}<div style="display:flex;gap:8px;flex-wrap:wrap">{"".join(t[1:])}'
            "</div></div>" for t in turns)


class ClassifierComparePanel(Panel):
    """Compare classifiers (fine-tuned folders, the frozen-encoder probe) on typed or sampled texts.

    Args:
        scorers: Display name to a scorer: anything with ``labels``, ``predict_proba(texts)`` and
            called as ``scorer(texts) -> labels`` (``ClassifierScorer``, ``Probe``).
        test: A labelled test split, for sampling texts and for the metrics.
        cfg: Bootstrap settings.
        top: How many labels to show per model.
        comparer: The core function, ``compare_classifiers`` (tests pass a stub).
    """

    def __init__(self, scorers: dict, test: LoadedDataset | None = None, cfg: CompareConfig = CompareConfig(),
                 top: int = 3, comparer: Callable = compare_classifiers):
        if not scorers:
            raise ValueError("ClassifierComparePanel needs at least one model")
        self.scorers, self.test, self.cfg, self.top = dict(scorers), test, cfg, top
        self._compare = comparer
        self.truth: str | None = None
        self._sampled = ""
        self.predictions: dict[str, list[tuple[str, float]]] = {}
        self.comparison = None
        names = list(scorers)
        (self.pick, self.text, self.sample_btn, self.classify_btn, self.columns, self.status, self.metrics_btn,
         self.metrics_html) = _common_widgets(names, names, test, "Type a message", "Classify", "70px")
        self.truth_html = widgets.HTML()
        self.examples_html = widgets.HTML("<i>Score the models to browse the examples where they disagree.</i>")
        self.sample_btn.on_click(lambda _: self.sample())
        self.classify_btn.on_click(lambda _: self.start_classify())
        self.metrics_btn.on_click(lambda _: self.start_score())
        side = widgets.VBox([widgets.HBox([self.pick, self.text]),
                             widgets.HBox([self.sample_btn, self.classify_btn, self.status]),
                             self.truth_html, self.columns])
        self.scoring = ScoreProgress()
        self.cancel_btn = self.scoring.cancel_btn
        scored_on = (f"Scores the {len(test):,} rows of {html.escape(test.source)}" if test is not None
                     else "No test split to score on")
        metrics_tab = widgets.VBox([widgets.HBox([self.metrics_btn, self.cancel_btn, self.scoring.bar]),
                                    widgets.HTML(f"<small>{scored_on}.</small>"), self.scoring.status,
                                    self.metrics_html])
        self.tabs = widgets.Tab(children=[side, metrics_tab, self.examples_html])
        for i, t in enumerate(["Side by side", "Metrics", "Disagreements"]):
            self.tabs.set_title(i, t)
        self.widget = widgets.VBox([self.tabs])
        self.widget.add_class("wb-compare-panel")

    def _busy(self, flag: bool, message: str = "") -> None:
        self.classify_btn.disabled = flag
        self.metrics_btn.disabled = flag or self.test is None
        self.status.value = f"<i>{html.escape(message)}</i>" if message else ""

    def sample(self, row: int | None = None) -> int:
        """Put a test example's text in the box and remember its true label."""
        row = random.randrange(len(self.test)) if row is None else row
        self.text.value = self._sampled = str(self.test.frame["text"].iloc[row]).strip()
        self.truth = str(self.test.frame["label"].iloc[row])
        self.truth_html.value = f"<b>True label</b> ({html.escape(self.test.where(row))}): {html.escape(self.truth)}"
        return row

    def start_classify(self):
        names, text = list(self.pick.value), self.text.value.strip()
        if not names or not text:
            self.status.value = "<i>Pick at least one model and type a message.</i>"
            return None
        truth = self.truth if text == self._sampled else None  # a typed or edited text has no true label
        self._busy(True, "Classifying…")

        def work():
            try:
                for name in names:
                    self.predictions[name] = top_labels(self.scorers[name], [text], self.top)[0]
                self.render_predictions(names, truth)
                self._busy(False)
            except Exception as e:  # noqa: BLE001 - shown in the panel
                self._busy(False)
                self.status.value = self.error_html(e)

        return self._start(work, "compare-classify")

    def render_predictions(self, names: list[str], truth: str | None = None) -> None:
        boxes = []
        for name in names:
            rows = []
            for label, prob in self.predictions.get(name, []):
                mark = "" if truth is None else (" ✓" if label == truth else "")
                style = "font-weight:bold" if label == truth else ""
                rows.append(f'<tr><td style="{style}">{html.escape(label)}{mark}</td><td>{prob:.1%}</td></tr>')
            first = (self.predictions.get(name) or [("", 0.0)])[0][0]
            verdict = "" if truth is None else ("right" if first == truth else "wrong")
            boxes.append(widgets.HTML(
                f'<div class="wb-output" data-model="{html.escape(name)}" data-verdict="{verdict}" '
                f'style="border:1px solid {"#2a2" if verdict == "right" else "#c33" if verdict else "#ccc"};'
                f'padding:6px;min-width:220px"><b>{html.escape(name)}</b><table>{"".join(rows)}</table></div>'))
        self.columns.children = boxes

    def start_score(self):
        names = list(self.pick.value) or list(self.scorers)
        self._busy(True, "Scoring on the test split (progress in the Metrics tab)…")
        self.scoring.begin()

        def work():
            try:
                self.comparison = c = self._compare(self.test, {n: self.scorers[n] for n in names}, names[0],
                                                    self.cfg, progress=self.scoring.update, stop=self.scoring.stop)
                per_class = per_class_table(c)
                self.metrics_html.value = (
                    c.metrics[["accuracy", "accuracy_low", "accuracy_high", "macro_f1", "examples_per_s"]]
                    .round(4).to_html()
                    + f"<h4>Against {html.escape(c.reference)} (paired bootstrap, {self.cfg.confidence:.0%} interval)"
                    "</h4>" + shown_differences(c).round(4).to_html(index=False)
                    + "<h4>Classes that changed most (F1)</h4>"
                    + pd.concat([per_class.head(5), per_class.tail(5)]).round(3).to_html())
                preds = [f"pred:{n}" for n in names]
                differ = disagreement(c)
                self.examples_html.value = (f"<p>{len(differ)} of {len(c.examples)} examples get different labels."
                                            "</p>" + differ[["where", "text", "label", *preds]].head(50)
                                            .to_html(index=False, classes="wb-disagreements"))
                self._busy(False)
                self.scoring.finish(f"Scored {len(c.examples):,} examples.")
            except Cancelled:
                self._busy(False)
                self.scoring.finish(CANCELLED)
            except Exception as e:  # noqa: BLE001
                self._busy(False)
                self.scoring.finish()
                self.metrics_html.value = self.error_html(e)

        return self._start(work, "compare-score")


def compare_panel(models: ModelSet, test: LoadedDataset | None = None,
                  cfg: CompareConfig = CompareConfig()) -> ClassifierComparePanel | ComparePanel | None:
    """The side-by-side panel for a ``ModelSet`` (``workbench.compare.model_set``): classifiers or causal LMs.

    Returns None when there are no models.
    """
    if not models.models:
        return None
    return (ClassifierComparePanel if models.classifiers else ComparePanel)(models.models, test, cfg)


class _TextOnlyTok:
    """Enough of a tokenizer to extract references without loading a model."""

    eos_token = ""
    chat_template = None
