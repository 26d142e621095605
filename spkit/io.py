"""Atomic file output: every checkpoint, manifest and result is written to a temporary file in
the same folder and renamed into place, so an interrupted job never leaves a half-written file
and never destroys the previous complete one.

A job killed mid-write (SIGKILL, power loss) leaves its temporary behind, hidden and named
``.<name>.<pid>-XXXXXXXX.tmp<suffix>`` after the writer's process; :func:`sweep_temporaries` removes those
of writers that are no longer running (``spkit run`` and ``spkit pretrain-base`` sweep their folders when
they start)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from spkit.errors import UserError


class JSONFileError(UserError, ValueError):
    """A JSON file that is not valid JSON (truncated, damaged); the message names the file."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=f".tmp{path.suffix}",
                               dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes 0600 files; give the result the mode a plain open() would (0666 & ~umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[A-Za-z0-9_]{8}\.tmp")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep_temporaries(root: str | os.PathLike) -> list[Path]:
    """Remove the temporaries :func:`atomic_path` left under ``root`` (recursively) when its writer was
    killed mid-write: those whose writer process is no longer running (a live writer's are kept). Returns
    the removed paths."""
    root = Path(root)
    if not root.is_dir():
        return []
    removed = []
    for tmp in root.rglob(".*.tmp*"):
        m = _TEMPORARY.match(tmp.name)
        if m and tmp.is_file() and not _running(int(m["pid"])):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as JSON atomically."""
    return write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, with an error that names the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except json.JSONDecodeError as e:
        raise JSONFileError(f"{path}: not valid JSON ({e}); the file is damaged: restore it, or delete it "
                            "to make it again") from e


def torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` atomically: the previous checkpoint survives an interrupted save."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)
