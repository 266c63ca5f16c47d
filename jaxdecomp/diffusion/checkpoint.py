"""Checkpoints of training state and trained networks (the only module that imports orbax).

Training checkpoints live in a directory with one sub-directory per step, written by
``orbax.checkpoint.CheckpointManager`` (saves are atomic: orbax writes to a temporary
directory and renames it when complete, so a killed process never leaves a half-written
step behind under a step name). Each step holds two items:

* ``state``: a pytree of arrays (parameters, optimiser state, EMA, buffers, step), and
* ``meta``: JSON with a SHA-256 digest of every array in ``state`` plus whatever the
  caller adds (the trainer stores its loss log there).

:func:`latest_good` restores the newest step whose files read back and whose digest
matches. An unreadable step (truncated or overwritten files, missing files) is moved
aside to ``<step>.corrupt`` (never deleted), a warning names the directory, the bad step
and the step it fell back to, and the previous step is tried; when no step is readable a
warning says so and ``None`` is returned (the caller starts fresh).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

__all__ = ["Checkpointer", "Restored", "latest_good", "load_model", "save_model", "tree_digest"]

PyTree = Any


def tree_digest(tree: PyTree) -> str:
    """SHA-256 hex digest of the leaves of ``tree`` (paths, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        arr = np.asarray(jax.device_get(leaf))
        h.update(jax.tree_util.keystr(path).encode())
        h.update(str(arr.dtype).encode())
        h.update(str(arr.shape).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _abstract(template: PyTree) -> PyTree:
    """Shape/dtype/sharding description of ``template`` for orbax restores."""
    def one(x):
        sharding = getattr(x, "sharding", None)
        if sharding is None:
            sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        return jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype if not hasattr(x, "dtype") else x.dtype,
                                    sharding=sharding)
    return jax.tree.map(one, template)


def _manager(directory, keep: int | None = None, create: bool = True) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        enable_async_checkpointing=False,
        create=create,
    )
    return ocp.CheckpointManager(os.fspath(Path(directory).absolute()), options=options,
                                 item_names=("state", "meta"))


class Restored(NamedTuple):
    """A restored training checkpoint: ``step``, ``state`` (pytree like the template), ``meta`` (dict)."""

    step: int
    state: PyTree
    meta: dict


class Checkpointer:
    """Saves training checkpoints to ``directory``, keeping the newest ``keep``.

    ``save(step, state, meta)`` writes ``state`` (a pytree of arrays, possibly sharded)
    and ``meta`` (JSON-serialisable dict) synchronously; use as a context manager or
    call ``close()``.
    """

    def __init__(self, directory, keep: int = 3):
        if isinstance(keep, bool) or int(keep) != keep or keep < 1:
            raise ValueError(f"keep: expected a positive int, got {keep!r}")
        self.directory = Path(directory).absolute()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._mgr = _manager(self.directory, int(keep))

    def save(self, step: int, state: PyTree, meta: dict | None = None) -> None:
        meta = dict(meta or {})
        meta["digest"] = tree_digest(state)
        meta["step"] = int(step)
        self._mgr.save(int(step), args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                           meta=ocp.args.JsonSave(meta)), force=True)
        self._mgr.wait_until_finished()

    def all_steps(self) -> list[int]:
        return sorted(self._mgr.all_steps())

    def close(self) -> None:
        self._mgr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _move_aside(directory: Path, step: int) -> Path | None:
    src = directory / str(step)
    if not src.exists():
        return None
    dst = directory / f"{step}.corrupt"
    n = 1
    while dst.exists():
        dst = directory / f"{step}.corrupt{n}"
        n += 1
    try:
        src.rename(dst)
    except OSError:
        return None
    return dst


def latest_good(directory, template: PyTree | None = None) -> Restored | None:
    """Restore the newest readable checkpoint in ``directory``, or ``None``.

    ``template``: a pytree with the structure, shapes, dtypes (and shardings) of the saved
    state; restored arrays take its shardings. Without a template orbax's own metadata is
    used (nested dicts, host-local arrays).

    Steps are tried newest first. A step that fails to restore, or whose arrays do not
    match the digest recorded at save time, triggers a ``UserWarning`` naming the
    directory, the bad step and the step it falls back to; the bad step directory is
    renamed ``<step>.corrupt`` so later saves of that step number cannot collide. Never
    raises for unreadable checkpoints; a missing or empty directory returns ``None``
    silently.
    """
    directory = Path(directory).absolute()
    if not directory.is_dir():
        return None
    try:
        mgr = _manager(directory, create=False)
        steps = sorted(mgr.all_steps(), reverse=True)
    except Exception as err:  # noqa: BLE001 - unreadable directory metadata: start fresh, loudly
        warnings.warn(f"checkpoint directory '{directory}' could not be listed ({type(err).__name__}: {err}); "
                      f"starting from scratch", stacklevel=2)
        return None
    if not steps:
        mgr.close()
        return None
    abstract = None if template is None else _abstract(template)
    bad: list[tuple[int, str]] = []
    found = None
    for step in steps:
        try:
            state_args = ocp.args.StandardRestore(abstract) if abstract is not None else ocp.args.StandardRestore()
            out = mgr.restore(step, args=ocp.args.Composite(state=state_args, meta=ocp.args.JsonRestore()))
            meta = dict(out.meta)
            if meta.get("digest") != tree_digest(out.state):
                raise ValueError("array contents do not match the digest recorded at save time")
            found = Restored(int(step), out.state, meta)
            break
        except Exception as err:  # noqa: BLE001 - any failure means this step is unreadable
            bad.append((step, f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"))
    mgr.close()
    for step, why in bad:
        moved = _move_aside(directory, step)
        where = f"moved to '{moved.name}'" if moved is not None else "left in place"
        fallback = f"falling back to step {found.step}" if found is not None else "no older step left"
        warnings.warn(f"checkpoint step {step} in '{directory}' is unreadable ({why}); {where}; {fallback}",
                      stacklevel=2)
    if found is None:
        warnings.warn(f"no readable checkpoint in '{directory}' (tried steps {[s for s, _ in bad]}); "
                      f"starting from scratch", stacklevel=2)
    return found


# ----------------------------------------------------------------------------- whole models
def save_model(path, model: nnx.Module, *, overwrite: bool = False) -> Path:
    """Save every variable of an NNX ``model`` (params and buffers) to the directory ``path``.

    Raises ``FileExistsError`` if ``path`` exists and ``overwrite`` is False. Returns the path.
    """
    path = Path(path).absolute()
    if path.exists() and not overwrite:
        raise FileExistsError(f"path: '{path}' already exists; pass overwrite=True to replace it")
    state = nnx.state(model)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path, state, force=overwrite)
        ckptr.wait_until_finished()
    return path


def load_model(path, model_template: nnx.Module) -> nnx.Module:
    """Load variables saved by :func:`save_model` into a copy of ``model_template``.

    ``model_template`` must be built with the same architecture arguments (its values are
    ignored). Returns a new module; the template is not modified.
    """
    path = Path(path).absolute()
    if not path.exists():
        raise FileNotFoundError(f"path: no saved model at '{path}'")
    graphdef, state = nnx.split(model_template)
    with ocp.StandardCheckpointer() as ckptr:
        restored = ckptr.restore(path, _abstract(state))
    return nnx.merge(graphdef, restored)
