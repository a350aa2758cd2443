"""Sections and chunks: blocks grouped under their headings, then cut to a token budget.

A *section* is a heading and the blocks up to the next heading; a heading with nothing
under it (a chapter title straight before its first subsection) is carried into the next
section's text, so no chunk is a lone heading (except a heading that ends a document, kept
so that its words are not lost). Chunks never cross a section boundary.
Inside a section the cut is placed, within the last half of the token budget, at the
strongest boundary available: between blocks (paragraphs, list items), else after a
sentence, else between words; consecutive chunks of one section share ``overlap`` tokens,
starting at a word (a word longer than the overlap is shared whole, up to twice the overlap).

Tokens come from any Hugging Face tokenizer (a fast one's offset mapping says where each
token lies in the text; a slow one is applied word by word), a ``tokenizers.Tokenizer``,
or, with None, whitespace-separated words.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .base import Block, ChunkStats

_WORD = re.compile(r"\S+")
_SENTENCE_END = re.compile(r"[.!?][\"'\u201d\u2019)\]]*$")


# --------------------------------------------------------------------------- tokenizers


class TokenCounter:
    """Token spans of a text, for one tokenizer. ``None`` and ``"whitespace"`` count words."""

    name = "whitespace"

    def spans(self, text: str) -> list[tuple[int, int]]:
        """``(start, end)`` character offsets of each token of ``text``."""
        return [m.span() for m in _WORD.finditer(text)]

    def count(self, texts: list[str]) -> list[int]:
        return [len(_WORD.findall(t)) for t in texts]


class _FastCounter(TokenCounter):
    """A ``tokenizers.Tokenizer`` (the backend of every fast Hugging Face tokenizer)."""

    def __init__(self, backend, name: str):
        self.backend = backend
        self.name = name

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [s for s in self.backend.encode(text, add_special_tokens=False).offsets]

    def count(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        return [len(e.ids) for e in self.backend.encode_batch(texts, add_special_tokens=False)]


class _SlowCounter(TokenCounter):
    """A tokenizer without offsets: each word is tokenized alone and its tokens share its span."""

    def __init__(self, tokenizer, name: str):
        self.tokenizer = tokenizer
        self.name = name

    def spans(self, text: str) -> list[tuple[int, int]]:
        out = []
        for m in _WORD.finditer(text):
            out.extend([m.span()] * max(1, len(self.tokenizer.tokenize(m.group()))))
        return out

    def count(self, texts: list[str]) -> list[int]:
        return [len(self.spans(t)) for t in texts]


def token_counter(tokenizer=None) -> TokenCounter:
    """A ``TokenCounter`` for ``tokenizer``.

    Args:
        tokenizer: None or ``"whitespace"`` (words); a local folder with a Hugging Face
            tokenizer (``AutoTokenizer.from_pretrained``, offline); a Hugging Face tokenizer
            object; or a ``tokenizers.Tokenizer``.

    Raises:
        ValueError: a string that is neither ``"whitespace"`` nor an existing folder.
    """
    if tokenizer is None or (isinstance(tokenizer, str) and tokenizer.strip().lower() == "whitespace"):
        return TokenCounter()
    if isinstance(tokenizer, TokenCounter):
        return tokenizer
    if isinstance(tokenizer, (str, Path)):
        path = Path(tokenizer).expanduser()
        if not path.is_dir():
            raise ValueError(f"tokenizer {str(tokenizer)!r} is neither 'whitespace' nor a folder on this machine; "
                             "pass 'whitespace', the folder a tokenizer was saved to (save_pretrained), or a "
                             "tokenizer object (a preset by name: workbench.presets.resolve_tokenizer(name)).")
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(path))
        name = str(tokenizer.name_or_path or path)
    else:
        name = str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return _FastCounter(backend, name)
    if hasattr(tokenizer, "encode_batch") and hasattr(tokenizer, "get_vocab_size"):
        return _FastCounter(tokenizer, name)  # a bare tokenizers.Tokenizer
    if hasattr(tokenizer, "tokenize"):
        return _SlowCounter(tokenizer, name)
    raise TypeError(f"cannot count tokens with {type(tokenizer).__name__}: pass a Hugging Face tokenizer, "
                    "a tokenizers.Tokenizer, a tokenizer folder, or None for whitespace words.")


# --------------------------------------------------------------------------- sections


@dataclass
class Section:
    """A heading and the blocks under it, as grouped by ``sections``.

    Attributes:
        heading: The heading block, None for text before the first heading.
        path: Heading texts from the top level down, joined by `` > ``.
        lead: Texts of headings with nothing under them, carried into this section.
        blocks: The body blocks.
    """

    heading: Block | None
    path: str
    lead: list[Block] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)

    @property
    def body(self) -> str:
        """The body alone, blocks separated by blank lines (list items by one line break)."""
        return assemble(self.blocks)[0]


def sections(blocks: Iterable[Block]) -> Iterator[Section]:
    """Group blocks under their headings, in order."""
    stack: list[Block] = []
    current = Section(None, "")
    lead: list[Block] = []
    for block in blocks:
        if block.kind != "heading":
            current.blocks.append(block)
            continue
        if current.blocks:
            yield current
            lead = []
        elif current.heading is not None:
            lead = current.lead + [current.heading]
        while stack and stack[-1].level >= block.level:
            stack.pop()
        stack.append(block)
        current = Section(block, " > ".join(b.text for b in stack), lead)
    if current.blocks:
        yield current
    elif current.heading is not None:  # a trailing heading with no body: keep its text
        yield Section(None, current.path, [], current.lead + [current.heading])


def assemble(blocks: list[Block]) -> tuple[str, list[int]]:
    """Join blocks into one text; returns it and the offset where each block starts."""
    parts: list[str] = []
    starts: list[int] = []
    pos = 0
    prev = None
    for block in blocks:
        if parts:
            sep = "\n" if block.kind == prev == "list_item" else "\n\n"
            parts.append(sep)
            pos += len(sep)
        starts.append(pos)
        parts.append(block.text)
        pos += len(block.text)
        prev = block.kind
    return "".join(parts), starts


# --------------------------------------------------------------------------- chunking


@dataclass(frozen=True)
class Chunk:
    """One piece of a section: its text, token count, and where it starts."""

    text: str
    tokens: int
    page: int | None
    line: int | None


def _strengths(text: str, spans: list[tuple[int, int]], starts: list[int]) -> tuple[list[int], list[int]]:
    """For each token: how good a place it is to start a chunk, and where its text (past whitespace) starts.

    Strength 3: a new block starts here; 2: a sentence ended before it; 1: a word starts
    here; 0: inside a word, or a token of whitespace only (never a place to cut).
    """
    n = len(spans)
    strength = [0] * n
    word_start = [0] * n
    last_end = 0
    block = 0
    for j, (s, e) in enumerate(spans):
        k = s
        while k < e and text[k].isspace():
            k += 1
        word_start[j] = k
        if k == e:  # whitespace-only token (a newline in byte-level BPE)
            continue
        if j == 0 or (last_end < k and text[last_end:k].isspace()):
            while block + 1 < len(starts) and starts[block + 1] <= k:
                block += 1
            if j > 0 and last_end <= starts[block] <= k:
                strength[j] = 3
            elif j > 0 and _SENTENCE_END.search(text[max(0, last_end - 3):last_end]):
                strength[j] = 2
            else:
                strength[j] = 1
        last_end = e
    return strength, word_start


def chunk_text(counter: TokenCounter, blocks: list[Block], chunk_size: int | None, overlap: int) -> list[Chunk]:
    """Cut the text of ``blocks`` (one section) into chunks of at most ``chunk_size`` tokens."""
    text, starts = assemble(blocks)
    if not text.strip():
        return []

    def where(offset: int) -> tuple[int | None, int | None]:
        b = blocks[max(0, bisect.bisect_right(starts, offset) - 1)]
        return b.page, b.line

    spans = counter.spans(text)
    if chunk_size is None or len(spans) <= chunk_size:
        return [Chunk(text, len(spans), *where(0))]
    strength, word_start = _strengths(text, spans, starts)
    n = len(spans)
    out: list[Chunk] = []
    i = 0
    while i < n:
        limit = i + chunk_size
        if limit >= n:
            j = n
        else:
            lo = i + max(1, chunk_size // 2)
            j = max(range(lo, limit + 1), key=lambda t: (strength[t], t))
        piece = _piece(text, spans, word_start, i, j)
        tokens = counter.count([piece])[0]
        while tokens > chunk_size and j - i > 1:  # retokenising the piece can add a token or two at its edges
            j = max(i + 1, j - (tokens - chunk_size))
            while j - 1 > i and strength[j] == 0:
                j -= 1
            piece = _piece(text, spans, word_start, i, j)
            tokens = counter.count([piece])[0]
        if piece:
            out.append(Chunk(piece, tokens, *where(word_start[i])))
        if j >= n:
            break
        # The next chunk starts ``overlap`` tokens back, at a word: the first word start
        # inside the overlap, or, when one long word fills it, the start of that word if it
        # is no more than twice the overlap back (a long URL is not repeated whole).
        k = max(i + 1, j - overlap)
        while k < j and strength[k] == 0:
            k += 1
        if k == j and overlap:
            floor = max(i + 1, j - 2 * overlap)
            k = max(i + 1, j - overlap)
            while k > floor and strength[k] == 0:
                k -= 1
            k = k if strength[k] else j
        i = k
    return out


def _piece(text: str, spans, word_start, i: int, j: int) -> str:
    """The text of tokens ``[i, j)``, from the first token's word to the last token's end."""
    return text[word_start[i]:spans[j - 1][1]].strip()


# --------------------------------------------------------------------------- statistics


def stats_from_counts(counts: list[int], tokenizer: str, chunk_size: int | None) -> ChunkStats:
    """``ChunkStats`` from a list of chunk lengths in tokens."""
    if not counts:
        return ChunkStats(0, 0, 0.0, 0.0, 0, 0.0, 0, tokenizer, chunk_size, 0)
    arr = np.asarray(counts)
    return ChunkStats(
        count=len(counts), min=int(arr.min()), median=float(np.median(arr)),
        p95=float(np.percentile(arr, 95)), max=int(arr.max()), mean=round(float(arr.mean()), 2),
        total=int(arr.sum()), tokenizer=tokenizer, chunk_size=chunk_size,
        over_limit=int((arr > chunk_size).sum()) if chunk_size else 0,
    )


def chunk_stats(corpus, tokenizer=None, chunk_size: int | None = None) -> ChunkStats:
    """Count and token-length statistics of a corpus's chunks.

    Args:
        corpus: A ``LoadedDataset`` in ``corpus`` format (``DocumentIngest.corpus``), or a
            ``DocumentIngest``.
        tokenizer: Counts tokens with this tokenizer (see ``token_counter``); None counts
            whitespace-separated words.
        chunk_size: The limit to count ``over_limit`` against.

    Returns:
        A frozen ``ChunkStats``.
    """
    ds = getattr(corpus, "corpus", corpus)
    counter = token_counter(tokenizer)
    texts = ds.frame["text"].tolist() if len(ds) else []
    return stats_from_counts(counter.count(texts), counter.name, chunk_size)
