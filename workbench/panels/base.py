"""What every panel shares: a root widget, display, and error rendering without tracebacks."""

from __future__ import annotations

import html
import threading

import ipywidgets as widgets

from ..config import field_help


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
