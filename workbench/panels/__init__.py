"""ipywidgets views over the core functions. Each panel is one screen of code: it builds
widgets, wires handlers that read widget values and call the core, and renders the result.
Core callables are passed in so tests can hand panels stubs."""

from .compare import ClassifierComparePanel, ComparePanel, compare_panel
from .dashboard import Dashboard
from .dataset import DatasetPanel
from .runs import RunsPanel
from .tokens import TokenPanel
from .train import TrainPanel

__all__ = ["ClassifierComparePanel", "ComparePanel", "Dashboard", "DatasetPanel", "RunsPanel", "TokenPanel",
           "TrainPanel", "compare_panel"]
