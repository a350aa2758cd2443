"""The data layer: load, detect the format, validate, clean, find personal data, split.

>>> from workbench.data import load_dataset, data_report
>>> ds = load_dataset("datasets/banking77")          # doctest: +SKIP
>>> ds.format, len(ds)                               # doctest: +SKIP
('classification', 10003)
"""

from .clean import (
    DuplicateGroup,
    DuplicateReport,
    drop_duplicates,
    filter_length,
    find_duplicates,
    input_output,
    normalize_text,
)
from .dataset import LoadedDataset, ValidationReport, rare_label_problems
from .formats import ALIASES, FORMATS, Detection, Format, detect_format, get_format, register_format
from .load import load_table, split_names
from .pii import KIND_NAMES as PII_KINDS
from .pii import PiiFinding, PiiReport, find_pii, redact_pii, redact_text, scan_pii
from .problems import DatasetError, Problem
from .readers import READERS, SUFFIXES
from .report import DataReport, data_report
from .sources import load_dataset
from .split import Splits, split_dataset, verify_splits

__all__ = [
    "ALIASES", "FORMATS", "PII_KINDS", "READERS", "SUFFIXES", "split_names",
    "DataReport", "DatasetError", "Detection", "Format", "DuplicateGroup", "DuplicateReport", "LoadedDataset",
    "PiiFinding", "PiiReport", "Problem", "Splits", "ValidationReport",
    "data_report", "detect_format", "drop_duplicates", "filter_length", "find_duplicates", "find_pii",
    "get_format", "input_output", "load_dataset", "load_table", "normalize_text", "rare_label_problems", "redact_pii",
    "redact_text", "register_format",
    "scan_pii", "split_dataset", "verify_splits",
]
