"""Write and read a session archive (one zip file or a folder), verified, never executing anything from it.

Layout: ``manifest.json`` (format, version, library versions, and the size and sha256 of every other file),
``tensors/<group>.safetensors``, ``states/<name>.pt`` (plain data only), ``arrays/<group>.npz``,
``documents/<name>.json`` and ``events.jsonl``. Reading checks every name, size and checksum before it
deserialises anything, and loads ``.pt`` files only with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import io
import json
import lzma
import math
import os
import platform
import re
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch

from ..errors import ArchiveError
from .files import write_folder, write_zip

FORMAT = "onthefly-nb-session"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
EVENTS = "events.jsonl"
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
SUFFIXES = {"tensors": ".safetensors", "states": ".pt", "arrays": ".npz", "documents": ".json"}
# What zipfile (also inside np.load) can raise on a damaged zip.
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, NotImplementedError, RuntimeError,
              ValueError)
REFUSED = "Only open archives written by onthefly-nb; save the session again from the notebook that made it."


@dataclass(eq=False)
class ArchiveContents:
    """Everything in one archive; each field maps a name (which may contain "/") to what is stored under it."""

    tensors: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    states: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    documents: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)


def write_archive(path: str | os.PathLike[str], contents: ArchiveContents, *, overwrite: bool = False) -> Path:
    """Write ``contents`` to ``path``: one zip file if it ends with .zip (replaced atomically), else a folder.

    A folder that exists and is not empty is replaced only with ``overwrite=True``.
    """
    target = Path(path)
    files = _encode(contents)
    files = {MANIFEST: json.dumps(_manifest(files), indent=2).encode(), **files}
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix == ".zip":
        write_zip(target, files)
    else:
        write_folder(target, files, overwrite)
    return target


def read_archive(path: str | os.PathLike[str]) -> ArchiveContents:
    """Read an archive written by ``write_archive``; raises ArchiveError unless every file is exactly as listed."""
    source = Path(path)
    if source.is_dir():
        return _decode(_read_folder(source))
    if not source.exists():
        raise ArchiveError(f"No session archive at {source}: check the path (a .zip file or a folder).")
    try:
        with zipfile.ZipFile(source) as archive:
            files = _read_zip(archive)
    except ArchiveError:
        raise
    except ZIP_ERRORS as err:
        raise ArchiveError(f"{source} is not a readable zip archive; it may be truncated or damaged ({err}). "
                           "Copy it again from where it was saved, or save the session again.") from err
    return _decode(files)


def _check_name(name: str, advice: str = "Rename it.") -> None:
    """Refuse a name that could leave the archive's folder (zip-slip) or be read two ways."""
    parts = name.split("/") if isinstance(name, str) else [""]
    if any(part in ("", ".", "..") or "\\" in part or ":" in part or "\0" in part for part in parts):
        raise ArchiveError(f"Unsafe name {name!r}: names are '/'-separated parts without '..', '.', backslashes, ':' "
                           f"or empty parts, and do not start with '/'. {advice}")


def _encode(contents: ArchiveContents) -> dict[str, bytes]:
    """The bytes of every file but the manifest, keyed by path in the archive."""
    files = {}
    for group, tensors in contents.tensors.items():
        files[_path("tensors", group)] = _encode_tensors(group, tensors)
    for name, state in contents.states.items():
        files[_path("states", name)] = _encode_state(name, state)
    for group, arrays in contents.arrays.items():
        files[_path("arrays", group)] = _encode_arrays(group, arrays)
    for name, document in contents.documents.items():
        files[_path("documents", name)] = _encode_json(f"documents[{name!r}]", document).encode()
    files[EVENTS] = "".join(_encode_json(f"events[{i}]", e) + "\n" for i, e in enumerate(contents.events)).encode()
    return files


def _path(kind: str, name: str) -> str:
    _check_name(name)
    return f"{kind}/{name}{SUFFIXES[kind]}"


def _encode_tensors(group: str, tensors: dict[str, torch.Tensor]) -> bytes:
    for key, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise ArchiveError(f"tensors[{group!r}][{key!r}] is a {type(value).__name__}, not a torch.Tensor.")
    # A contiguous clone gives each tensor its own storage, as safetensors needs (views, shared storage).
    clones = {k: v.detach().cpu().clone(memory_format=torch.contiguous_format) for k, v in tensors.items()}
    return safetensors.torch.save(clones, metadata={"order": json.dumps(list(clones))})


def _encode_state(name: str, state: Any) -> bytes:
    buffer = io.BytesIO()
    try:
        torch.save(state, buffer)
        torch.load(io.BytesIO(buffer.getvalue()), weights_only=True, map_location="cpu")
    except Exception as err:  # whatever fails, the state could not be read back safely
        raise ArchiveError(f"states[{name!r}] cannot be stored{_reason(err)}: keep it to tensors, numbers, strings, "
                           "lists, tuples, dicts, None and bools (torch.from_numpy for numpy arrays).") from None
    return buffer.getvalue()


def _encode_arrays(group: str, arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz like np.savez writes, refusing object arrays (which would be pickled)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as npz:
        for key, value in arrays.items():
            if np.asarray(value).dtype.hasobject:
                raise ArchiveError(f"arrays[{group!r}][{key!r}] holds Python objects: store numbers or strings.")
            with npz.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(value), allow_pickle=False)
    return buffer.getvalue()


def _encode_json(where: str, value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as err:
        raise ArchiveError(f"{where} cannot be stored as JSON ({err}): use dicts, lists, str, numbers, None.") from None


def _reason(err: Exception) -> str:
    """The callable a refused pickle names, where torch's message says it."""
    match = re.search(r"GLOBAL (\S+)", str(err))
    return f" (it would call {match[1]})" if match else ""


def _manifest(files: dict[str, bytes]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "library_versions": {"onthefly_nb": _own_version(), "torch": torch.__version__, "numpy": np.__version__,
                             "safetensors": safetensors.__version__, "python": platform.python_version()},
        "files": {name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                  for name, data in files.items()},
    }


def _own_version() -> str:
    try:
        return importlib.metadata.version("onthefly-nb")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _read_zip(archive: zipfile.ZipFile) -> dict[str, bytes]:
    names = archive.namelist()
    if len(set(names)) != len(names):
        raise ArchiveError(f"The archive holds two members with one name, so which is meant is unclear. {REFUSED}")
    packed = [info.filename for info in archive.infolist() if info.compress_type != zipfile.ZIP_STORED]
    if packed:  # what is read can then never exceed the file itself (no zip bombs)
        raise ArchiveError(f"{packed[0]} is compressed, which onthefly-nb never does. {REFUSED}")

    def read(name: str, limit: int) -> bytes:
        with archive.open(name) as member:
            return member.read(limit + 1)

    return _verified(names, read)


def _read_folder(root: Path) -> dict[str, bytes]:
    names = []
    for entry in sorted(root.rglob("*")):
        if entry.is_symlink() or not (entry.is_file() or entry.is_dir()):
            raise ArchiveError(f"{entry} is a link or special file, which an archive never holds. {REFUSED}")
        if entry.is_file():
            names.append(entry.relative_to(root).as_posix())

    def read(name: str, limit: int) -> bytes:
        with open(root / name, "rb") as stream:
            return stream.read(limit + 1)

    return _verified(names, read)


def _verified(names: list[str], read: Callable[[str, int], bytes]) -> dict[str, bytes]:
    """Every listed file's bytes, once all names, sizes and sha256s match the manifest; nothing unlisted is read.

    ``read(name, limit)`` returns at most ``limit + 1`` bytes, so a member larger than listed is caught unread.
    """
    for name in names:
        _check_name(name, REFUSED)
    if MANIFEST not in names:
        raise ArchiveError(f"The archive has no {MANIFEST}: it is not an onthefly-nb session archive, or it is "
                           "truncated. Copy it again from where it was saved, or save the session again.")
    listed = _check_manifest(read(MANIFEST, MAX_MANIFEST_BYTES))
    unlisted = sorted(set(names) - set(listed) - {MANIFEST})
    if unlisted:
        raise ArchiveError(f"The archive holds files its manifest does not list: {unlisted}. {REFUSED}")
    missing = [name for name in listed if name not in names]
    if missing:
        raise ArchiveError(f"Files listed in the manifest are missing: {missing}; the archive is incomplete. "
                           "Copy it again from where it was saved, or save the session again.")
    files = {}
    for name, entry in listed.items():
        data = read(name, entry["size"])
        if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise ArchiveError(f"{name} does not match the size and sha256 in the manifest: it is damaged or was "
                               f"altered. {REFUSED}")
        files[name] = data
    return files


def _check_manifest(data: bytes) -> dict[str, dict[str, Any]]:
    """The manifest's file table, once its format, version and shape are right."""
    try:
        manifest = json.loads(data) if len(data) <= MAX_MANIFEST_BYTES else None
    except (ValueError, RecursionError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArchiveError(f"{MANIFEST} does not name the format {FORMAT!r}: this is not an onthefly-nb session "
                           f"archive, or its manifest is damaged. {REFUSED}")
    version = manifest.get("format_version")
    if type(version) is not int or version < 1:
        raise ArchiveError(f"{MANIFEST} has no valid format_version. {REFUSED}")
    if version > FORMAT_VERSION:
        versions = manifest.get("library_versions")
        writer = versions.get("onthefly_nb", "unknown") if isinstance(versions, dict) else "unknown"
        raise ArchiveError(f"This archive was written by a newer onthefly-nb {writer} (format version {version}; "
                           f"this one reads up to {FORMAT_VERSION}): upgrade with `pip install -U onthefly-nb`.")
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(_is_entry(entry) for entry in files.values()):
        raise ArchiveError(f"{MANIFEST} has no valid file table (path -> size, sha256). {REFUSED}")
    for name in files:
        _check_name(name, REFUSED)
    return files


def _is_entry(entry: Any) -> bool:
    return (isinstance(entry, dict) and type(entry.get("size")) is int and entry["size"] >= 0
            and isinstance(entry.get("sha256"), str))


def _decode(files: dict[str, bytes]) -> ArchiveContents:
    """Deserialise verified files, each with a reader that accepts plain data only."""
    contents = ArchiveContents()
    readers = {"tensors": _load_tensors, "states": _load_state, "arrays": _load_arrays, "documents": _load_json}
    for path, data in files.items():
        if path == EVENTS:
            contents.events = [_load_json(path, line) for line in data.splitlines()]
            continue
        kind, _, rest = path.partition("/")
        if kind not in SUFFIXES or not rest.endswith(SUFFIXES[kind]):
            raise ArchiveError(f"{path} is not a kind of file an onthefly-nb session archive holds. {REFUSED}")
        name = rest[: -len(SUFFIXES[kind])]
        _check_name(name, REFUSED)
        getattr(contents, kind)[name] = readers[kind](path, data)
    return contents


def _load_tensors(path: str, data: bytes) -> dict[str, torch.Tensor]:
    """The tensors in the order they were written, which the header's metadata keeps."""
    try:
        tensors = safetensors.torch.load(data)
        header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
        order = json.loads(header["__metadata__"]["order"])
    except Exception as err:  # safetensors raises its own SafetensorError, among others
        raise ArchiveError(f"{path} is not a readable safetensors file ({err}). {REFUSED}") from None
    if not isinstance(order, list) or sorted(map(str, order)) != sorted(tensors):
        raise ArchiveError(f"{path} lists its tensors in a header that does not match them. {REFUSED}")
    return {key: tensors[key] for key in order}


def _load_state(path: str, data: bytes) -> Any:
    try:
        return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as err:  # a refused global and a broken file alike: nothing is loaded
        raise ArchiveError(f"{path} holds executable content or is not plain data{_reason(err)}, so it was not "
                           f"loaded and nothing in it was run. {REFUSED}") from None


def _load_arrays(path: str, data: bytes) -> dict[str, np.ndarray]:
    """The arrays of an .npz, once every member is stored uncompressed and holds the bytes its header
    claims (so reading never allocates more than the file's own size)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as npz:
            for info in npz.infolist():
                _check_member(path, npz, info)
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an .npz")
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except (*ZIP_ERRORS, MemoryError) as err:  # a crafted header can claim an enormous shape
        raise ArchiveError(f"{path} is not a plain-data .npz file ({err}), so it was not loaded. {REFUSED}") from None


NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _check_member(path: str, npz: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    if info.compress_type != zipfile.ZIP_STORED:
        raise ArchiveError(f"{path}: {info.filename} is compressed inside the .npz, which onthefly-nb never "
                           f"writes (it could inflate to any size). {REFUSED}")
    with npz.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version not in NPY_HEADERS:
            raise ArchiveError(f"{path}: {info.filename} has .npy format {version}, which onthefly-nb never writes. "
                               f"{REFUSED}")
        shape, _fortran, dtype = NPY_HEADERS[version](member)
        claimed = dtype.itemsize * math.prod(shape)
        if dtype.hasobject or claimed > info.file_size:
            raise ArchiveError(f"{path}: {info.filename} claims {claimed} bytes of {dtype} in a member of "
                               f"{info.file_size} bytes. {REFUSED}")


def _load_json(path: str, data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as err:
        raise ArchiveError(f"{path} is not valid JSON ({err}). {REFUSED}") from None
