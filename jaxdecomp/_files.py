"""File helpers shared by model files, fitted-encoder files, training runs and map stores.

Written once here: the fingerprint of a (possibly large) data array, and the swap of a finished
temporary folder into place (no reader ever sees a half-written folder; the old folder is removed
only after the new one is in place).
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from pathlib import Path

import numpy as np

#: Arrays up to this size are hashed whole; larger ones by the bytes of evenly spaced rows.
FULL_HASH_BYTES = 256 << 20
SAMPLED_ROWS = 4096


def array_fingerprint(a, rows_name: str = "rows") -> dict:
    """Shape, dtype and SHA-256 of ``a`` (all bytes up to :data:`FULL_HASH_BYTES`; beyond, the bytes
    of :data:`SAMPLED_ROWS` evenly spaced rows, which ``"hashed"`` says, naming them ``rows_name``)."""
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype}{a.shape}".encode())
    if a.nbytes <= FULL_HASH_BYTES:
        h.update(a.tobytes())
        hashed = "all"
    else:
        rows = np.unique(np.linspace(0, a.shape[0] - 1, SAMPLED_ROWS).astype(np.int64))
        h.update(np.ascontiguousarray(a[rows]).tobytes())
        hashed = f"{len(rows)} sampled {rows_name}"
    return {"shape": [int(s) for s in a.shape], "dtype": str(a.dtype), "sha256": h.hexdigest(), "hashed": hashed}


def temporary_sibling(path: Path) -> Path:
    """A fresh hidden name next to ``path`` for a folder being written."""
    return path.parent / f".{path.name}.partial-{uuid.uuid4().hex[:8]}"


def swap_into_place(tmp: Path, path: Path) -> None:
    """Move the finished folder ``tmp`` to ``path``, replacing what is there only once ``tmp`` is in
    place; on any error ``tmp`` is removed and ``path`` keeps its old content."""
    try:
        old = None
        if path.exists():
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            path.rename(old)
        tmp.rename(path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def check_writable_dir(directory: Path, name: str, what: str = "") -> None:
    """Make ``directory`` (parents too) and check that files can be created in it; raise a
    ``ValueError`` naming ``name`` otherwise (before any work is done). ``what``: what could not be
    written there, for the message (e.g. ``"checkpoints"``)."""
    import errno
    import os

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{name}: '{directory}' exists and is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{name}: cannot create the directory '{directory}' ({err.strerror or err}); "
                         f"choose a writable location") from err
    probe = directory / f".write-test-{uuid.uuid4().hex[:8]}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, b"ok")
        finally:
            os.close(fd)
        os.remove(probe)
    except OSError as err:
        kind = "read-only" if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM) else "unwritable"
        cannot = f"{what} cannot be written there; " if what else ""
        raise ValueError(f"{name}: the directory '{directory}' is {kind} ({err.strerror or err}); {cannot}"
                         f"choose a writable location") from err


class DirLock:
    """An exclusive, non-blocking ``flock`` on ``<directory>/<lock_name>``, held until ``release()``.

    When another process holds it, raises ``locked(message)`` where the message names ``name``, the
    directory, the kind of ``run`` holding it, the holder (pid and host, written into the lock file)
    and ``busy`` (what to do).
    Where ``fcntl`` is missing (Windows) the lock is a no-op."""

    def __init__(self, directory: Path, name: str, *, lock_name: str, locked: type, run: str, busy: str):
        import errno
        import os

        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            fcntl = None
        self._fcntl = fcntl
        self.path = Path(directory) / lock_name
        self._fd = None
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise ValueError(f"{name}: cannot create the lock file '{self.path}' ({err.strerror or err})") from err
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                try:
                    holder = os.read(fd, 200).decode(errors="replace").strip()
                except OSError:
                    holder = ""
                os.close(fd)
                if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise locked(f"{name}: '{directory}' is in use by another {run}"
                                 + (f" ({holder})" if holder else "") + f"; {busy}") from None
                raise ValueError(f"{name}: cannot lock '{self.path}' ({err.strerror or err})") from err
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {os.uname().nodename if hasattr(os, 'uname') else '?'}".encode())
        except OSError:
            pass
        self._fd = fd

    def release(self) -> None:
        import os

        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                if self._fcntl is not None:
                    self._fcntl.flock(fd, self._fcntl.LOCK_UN)
            finally:
                os.close(fd)
