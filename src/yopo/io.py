"""Atomic writes: nothing that looks complete exists until it is complete.

Every file or folder is written under a temporary sibling name and renamed into place, so an
interrupted run leaves at most a `.tmp-*` entry, never a half-written checkpoint or result.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success it replaces `target` whole."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary shared folder
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it is renamed to `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".tmp-{target.name}-", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.chmod(0o644)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, data: Any, indent: int | None = 2) -> None:
    """`data` as JSON, atomically; indent=None writes it on one line (long lists of numbers)."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=indent, sort_keys=False, default=str) + "\n")


@lru_cache(maxsize=None)
def _sha256(path: Path, mtime_ns: int, size: int) -> str:  # keyed by mtime/size: cheap re-checks
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file's bytes (remembered while its mtime and size stay)."""
    path = Path(path).resolve()
    stat = path.stat()
    return _sha256(path, stat.st_mtime_ns, stat.st_size)
