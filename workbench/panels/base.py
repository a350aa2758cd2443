"""What every panel shares: a root widget, display, and error rendering without tracebacks."""

from __future__ import annotations

import html
import threading
from typing import Callable

import ipywidgets as widgets
import traitlets

from ..config import ConfigError, field_help, parse_field


def form_field(factory, cls: type, name: str, value, label: str | None = None, **kwargs) -> widgets.Widget:
    """A form widget for config field ``cls.name``: labelled with the field's name (or ``label``),
    its docstring as the tooltip, so the form says what the YAML and the command line say.

    Args:
        factory: The widget class (``widgets.IntSlider``...).
        cls, name: The config dataclass and its field.
        value: The starting value.
        label: A shorter or clearer label than the field name.
        **kwargs: More widget settings (bounds, options).
    """
    return factory(value=value, description=label or name.replace("_", " "), tooltip=field_help(cls, name), **kwargs)


def shown(value) -> str:
    """A config value as a form shows it: ``0.0003`` as ``3e-04``... as typed back, ``-1`` as ``-1``."""
    if isinstance(value, float):
        return f"{value:g}"
    return "" if value is None else str(value)


class TypedField:
    """A text box for config field ``cls.name`` that never changes what the user typed: the text is parsed with
    the field's type and the class's own checks (``config.parse_field``), and a problem shows beside the box
    (``problem``) until it is fixed. ``value`` is the parsed value; setting it writes the text.

    Args:
        cls, name, value, label: As ``form_field``.
        base: Gives the config the other fields come from (cross-field checks); default the class's defaults.
        on_change: Called after every check (a panel enables or disables Start).
    """

    def __init__(self, cls: type, name: str, value, label: str | None = None,
                 base: Callable[[], object] | None = None, on_change: Callable[[], None] | None = None,
                 width: str = "230px"):
        self.cls, self.name, self._base, self._on_change = cls, name, base, on_change
        self._value, self.problem = value, ""
        self.box = form_field(widgets.Text, cls, name, shown(value), label=label, continuous_update=True,
                              layout=widgets.Layout(width=width))
        self.box.add_class(f"wb-field-{name.replace('_', '-')}")
        self.error = widgets.HTML()
        self.error.add_class("wb-field-error")
        self.widget = widgets.VBox([self.box, self.error])
        self.box.observe(lambda _: self.check(), names="value")

    @property
    def value(self):
        return self._value

    @property
    def tooltip(self) -> str:
        """The field's docstring, as the box shows it on hover."""
        return self.box.tooltip

    @value.setter
    def value(self, value) -> None:
        self.box.value = shown(value)

    def check(self, notify: bool = True) -> str:
        """Parse the text; returns the problem ("" when the value is good) and shows it beside the box."""
        try:
            self._value = parse_field(self.cls, self.name, self.box.value,
                                      self._base() if self._base is not None else None)
            self.problem = ""
        except ConfigError as e:
            self.problem = str(e)
        self.error.value = (f'<span style="color:#b00" role="alert">{html.escape(self.problem)}</span>'
                            if self.problem else "")
        if notify and self._on_change is not None:
            self._on_change()
        return self.problem


class CheckboxGroup(widgets.VBox):
    """Several choices ticked on and off with a click each (a multiple select needs Ctrl+click, which users do
    not guess). ``value`` is the tuple of ticked options, in option order; it can be observed and set."""

    value = traitlets.Tuple()

    def __init__(self, options: list[str], value: tuple = (), description: str = "", empty: str = "", **kwargs):
        self._title = [widgets.HTML(f"<b>{html.escape(description)}</b>")] if description else []
        self._empty = empty
        super().__init__(**kwargs)
        self.set_options(options, value)

    def set_options(self, options: list[str], value: tuple = ()) -> None:
        """Offer ``options`` (``empty``'s message when there are none), ticking those in ``value``."""
        self.options = tuple(options)
        self.boxes = [widgets.Checkbox(value=o in value, description=o, indent=False) for o in self.options]
        for box in self.boxes:
            box.observe(self._ticked, names="value")
        note = [widgets.HTML(f"<i>{html.escape(self._empty)}</i>")] if self._empty and not self.options else []
        self.children = tuple(self._title + self.boxes + note)
        self.value = tuple(o for o in self.options if o in value)

    _syncing = False

    def _ticked(self, _change) -> None:
        if not self._syncing:
            self.value = tuple(o for o, b in zip(self.options, self.boxes) if b.value)

    @traitlets.observe("value")
    def _set(self, change) -> None:
        self._syncing = True  # ticking the boxes to match is not a change of its own
        try:
            for o, b in zip(self.options, self.boxes):
                b.value = o in change["new"]
        finally:
            self._syncing = False


class Panel:
    """Base of the panels: ``widget`` is the root; a panel displays itself in a notebook."""

    widget: widgets.Widget
    form: dict[tuple[type, str], widgets.Widget] = {}
    """The widgets that edit config fields, by (config class, field name)."""

    def form_values(self, cls: type) -> dict:
        """The form's values for the fields of ``cls`` (for ``dataclasses.replace``)."""
        return {name: w.value for (owner, name), w in self.form.items() if owner is cls}

    def show(self):
        from IPython.display import display

        display(self.widget)
        return self

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    @staticmethod
    def error_html(exc: BaseException) -> str:
        """An error as a short message for a panel (the problems of a DatasetError, no traceback)."""
        return (f'<div class="wb-error" style="color:#b00;white-space:pre-wrap">'
                f"{html.escape(type(exc).__name__)}: {html.escape(str(exc))}</div>")

    def _start(self, target, name: str) -> threading.Thread:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads = [t for t in getattr(self, "_threads", []) if t.is_alive()] + [thread]
        thread.start()
        return thread

    def wait(self, timeout: float = 60) -> None:
        """Block until the panel's worker threads finish (tests and headless use)."""
        for t in list(getattr(self, "_threads", [])):
            t.join(timeout)
