"""What every panel shares: a root widget, display, and error rendering without tracebacks."""

from __future__ import annotations

import html
import threading

import ipywidgets as widgets


class Panel:
    """Base of the panels: ``widget`` is the root; a panel displays itself in a notebook."""

    widget: widgets.Widget

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
