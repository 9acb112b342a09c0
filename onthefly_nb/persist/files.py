"""Writing an archive's files so that a reader never sees half of one: into a hidden sibling named
by the writing process, then renamed over the target. What a process killed mid-write (kill -9)
leaves is swept by the next write to the same target."""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import zipfile
from pathlib import Path

from ..errors import ArchiveError


def temp_sibling(target: Path, suffix: str) -> Path:
    """A hidden sibling named by this process (``.<name>.<pid>-<random>.<suffix>``)."""
    _sweep_stale(target)
    return target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(6)}.{suffix}")


def _sweep_stale(target: Path) -> None:
    """Remove what writes to ``target`` by processes that died mid-write (kill -9) left behind."""
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*-*.*"):
        pid = stale.name[len(target.name) + 2:].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def write_zip(target: Path, files: dict[str, bytes]) -> None:
    temp = temp_sibling(target, "tmp")
    try:
        with open(temp, "xb") as stream:
            with zipfile.ZipFile(stream, "w", zipfile.ZIP_STORED) as archive:
                for name, data in files.items():
                    archive.writestr(name, data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_folder(target: Path, files: dict[str, bytes], overwrite: bool) -> None:
    if target.exists() and not target.is_dir():
        raise ArchiveError(f"{target} is a file: pick a folder path, or a path ending with .zip for one file.")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise ArchiveError(f"{target} already exists and is not empty: pass overwrite=True or pick a new path.")
    temp = temp_sibling(target, "tmp")
    try:
        for name, data in files.items():
            (temp / name).parent.mkdir(parents=True, exist_ok=True)
            (temp / name).write_bytes(data)
        if target.exists():  # move the old folder aside, swap the new one in, then delete the old
            old = temp_sibling(target, "old")
            os.replace(target, old)
            os.replace(temp, target)
            shutil.rmtree(old)
        else:
            os.replace(temp, target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
