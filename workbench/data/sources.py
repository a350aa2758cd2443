"""``load_dataset``: any source, routed to the loader that reads it.

Documents (PDF, HTML, Markdown, DOCX, or a folder of them) go through
``workbench.data.documents`` and come back as a chunked corpus; every other source (a data
file or folder, a ``save_to_disk`` folder, a DataFrame, a hub name) goes through the table
loader, ``workbench.data.load.load_table``. This module sits above both, so neither imports
the other's caller.
"""

from __future__ import annotations

import pandas as pd

from .dataset import LoadedDataset
from .documents import ingest_documents, is_document_source
from .load import load_table


def load_dataset(source, format: str = "auto", columns: dict[str, str] | None = None, *, strict: bool = True,
                 reader: str | None = None, **table_options) -> LoadedDataset:
    """Load ``source`` into a validated dataset in the canonical schema of its format.

    Args:
        source: A file, a folder (of data files, documents, or a ``save_to_disk`` folder), a
            pandas DataFrame, or a Hub dataset name.
        format: ``"auto"`` (detect) or the name of a registered format
            (``workbench.data.formats.FORMATS``).
        columns: Canonical field to source column, e.g. ``{"text": "utterance", "label": "intent"}``.
        strict: Raise one ``DatasetError`` listing every error (True), or drop bad rows
            and keep the problems in ``report`` (False).
        reader: Force a table reader (``csv``, ``tsv``, ``json``, ``jsonl``, ``parquet``, ``text``) when the
            file extension is wrong (a file without one is sniffed); a forced reader reads documents as
            tables too.
        table_options: ``split``, ``encoding``, ``header``, ``delimiter``, ``quotechar``, ``field``,
            ``text_unit``: see ``workbench.data.load.load_table``.

    Returns:
        The dataset, with problems and counts in ``.report``.

    Raises:
        DatasetError: in strict mode for any error; in any mode when nothing usable is left
            or the source cannot be found or read.
    """
    if reader is None and not isinstance(source, pd.DataFrame) and is_document_source(source):
        return ingest_documents(source, strict=strict).corpus  # chunked into a corpus
    return load_table(source, format, columns, strict=strict, reader=reader, **table_options)
