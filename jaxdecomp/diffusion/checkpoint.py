"""Checkpoints of training state and trained networks (the only module that imports orbax).

Training checkpoints live in a directory with one sub-directory per step, written by
``orbax.checkpoint.CheckpointManager`` (saves are atomic: orbax writes to a temporary
directory and renames it when complete, so a killed process never leaves a half-written
step behind under a step name). Each step holds two items:

* ``state``: a pytree of arrays (parameters, optimiser state, EMA, buffers, step), and
* ``meta``: JSON with a SHA-256 digest of the whole ``state`` (``digest``), one per array
  keyed by its path (``leaves``, checkable without a template), plus whatever the caller
  adds (the trainer stores its loss log and its run fingerprint there).

A checkpoint that belongs to a *different run* is never treated as corrupt.
:func:`latest_good` first reads each step's array metadata (names, shapes, dtypes) and
compares it with the template: a difference raises :class:`CheckpointMismatch` naming the
first differing arrays, and nothing in the directory is touched. Only a step whose
structure matches (or whose metadata cannot be read at all) but whose files fail to read
back or whose arrays do not match the recorded digests is *corrupt*: it is moved aside to
``<step>.corrupt`` (never deleted), a warning names the directory, the bad step and the
step it fell back to, and the previous step is tried; when no step is readable a warning
says so and ``None`` is returned (the caller starts fresh). Without a template nothing is
ever moved: bad steps are reported and skipped.

:class:`Checkpointer` writes steps. It checks that its directory is a writable directory
before anything else (a ``ValueError`` naming the argument otherwise) and holds an
exclusive lock on ``<directory>/.lock`` (``fcntl.flock``) until closed, so a second
process (or a second ``Checkpointer``) on the same directory stops at once with
:class:`CheckpointLocked` instead of both writing into it.

Trained models are saved whole, in one place: :func:`save_model` writes a directory with
``model.json`` (the architecture spec of :mod:`jaxdecomp.diffusion.models`, the variables'
digest, each weight file's SHA-256 and the caller's metadata, e.g. the encoder the model was
trained with) and ``weights/`` (orbax). :func:`load_model` rebuilds the network from the spec
(no template needed), checks both digests and raises a ``ValueError`` naming the path for a
corrupt, truncated or foreign directory; :func:`model_info` reads the description alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from jaxdecomp._files import DirLock, check_writable_dir, swap_into_place, temporary_sibling


__all__ = ["CheckpointLocked", "CheckpointMismatch", "Checkpointer", "Restored", "latest_good", "load_model",
           "model_info", "save_model", "tree_digest"]

PyTree = Any
LOCK_FILE = ".lock"


class CheckpointMismatch(ValueError):
    """The checkpoints in a directory were written by a different run (another model
    structure, data, configuration, key or a later step than requested).

    Never a sign of corruption: nothing in the directory has been moved or changed.
    Attributes: ``directory`` (Path), ``step`` (the checkpoint step compared) and
    ``differences`` (list of one-line descriptions, e.g. ``"config.learning_rate: 0.01 now,
    0.003 in the checkpoint"``).
    """

    def __init__(self, directory, step: int, differences, *, name: str = "directory", hint: str = ""):
        self.directory, self.step, self.differences = Path(directory), int(step), list(differences)
        self.name, self.hint = name, hint
        msg = (f"{name}: the checkpoint at step {self.step} in '{self.directory}' was written by a different run "
               f"({'; '.join(self.differences)}); nothing was changed")
        super().__init__(msg + (f". {hint}" if hint else ""))


class CheckpointLocked(RuntimeError):
    """Another process (or another :class:`Checkpointer` in this one) is writing to the directory."""


def _key_name(k) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _flat(tree: PyTree) -> dict:
    """``{"a/b/0/value": leaf}``: leaves keyed by a path that does not depend on the container
    types (an ``nnx.State`` saved by orbax restores as nested dicts with the same names)."""
    return {"/".join(_key_name(k) for k in path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _digests(tree: PyTree) -> tuple[str, dict]:
    """(:func:`tree_digest` of ``tree``, ``{path: sha256[:32] of dtype, shape and bytes}``)."""
    h = hashlib.sha256()
    leaves = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        arr = np.asarray(jax.device_get(leaf))
        head = (str(arr.dtype) + str(arr.shape)).encode()      # shape of arr, not of a 1-d copy (scalars)
        data = np.ascontiguousarray(arr).tobytes()
        h.update(jax.tree_util.keystr(path).encode())
        h.update(head)
        h.update(data)
        one = hashlib.sha256(head)
        one.update(data)
        leaves["/".join(_key_name(k) for k in path)] = one.hexdigest()[:32]
    return h.hexdigest(), leaves


def tree_digest(tree: PyTree) -> str:
    """SHA-256 hex digest of the leaves of ``tree`` (paths, dtypes, shapes and bytes)."""
    return _digests(tree)[0]


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
    # explicit handlers (not just item names) so that a step's array metadata can be read
    # without restoring it (see _layout)
    return ocp.CheckpointManager(os.fspath(Path(directory).absolute()), options=options,
                                 item_handlers={"state": ocp.StandardCheckpointHandler(),
                                                "meta": ocp.JsonCheckpointHandler()})


def _why(err: BaseException) -> str:
    text = str(err).splitlines()[0][:200] if str(err) else ""
    return f"{type(err).__name__}: {text}"


def _layout_of_template(template: PyTree) -> dict:
    def dtype(v):
        return str(np.dtype(v.dtype if hasattr(v, "dtype") else np.asarray(v).dtype))
    return {k: (tuple(int(d) for d in np.shape(v)), dtype(v)) for k, v in _flat(template).items()}


def _stored_layout(mgr: ocp.CheckpointManager, step: int) -> dict:
    """``{path: (shape, dtype)}`` of the arrays saved at ``step``, from orbax's metadata only
    (no array is read). Raises if the metadata cannot be read."""
    md = mgr.item_metadata(step)
    state = md["state"] if md is not None else None
    if state is None:
        raise ValueError("no array metadata for item 'state'")
    out = {}
    for k, v in _flat(state).items():
        shape, dtype = getattr(v, "shape", None), getattr(v, "dtype", None)
        if shape is None or dtype is None:
            raise ValueError(f"array metadata of '{k}' lacks a shape or dtype")
        out[k] = (tuple(int(d) for d in shape), str(np.dtype(dtype)))
    if not out:
        raise ValueError("the saved state has no arrays")
    return out


def _layout_differences(stored: dict, want: dict, limit: int = 3) -> list[str]:
    """Human-readable differences between a checkpoint's array layout and the template's."""
    diffs = []
    missing, extra = sorted(set(want) - set(stored)), sorted(set(stored) - set(want))
    if missing:
        diffs.append(f"{len(missing)} array(s) of the current state are not in the checkpoint (e.g. "
                     f"{', '.join(repr(m) for m in missing[:limit])})")
    if extra:
        diffs.append(f"{len(extra)} array(s) in the checkpoint are not in the current state (e.g. "
                     f"{', '.join(repr(m) for m in extra[:limit])})")
    changed = [k for k in sorted(set(want) & set(stored)) if want[k] != stored[k]]
    for k in changed[:limit]:
        (ws, wd), (ss, sd) = want[k], stored[k]
        what = f"shape {ss} in the checkpoint, {ws} now" if ws != ss else f"dtype {sd} in the checkpoint, {wd} now"
        diffs.append(f"array '{k}': {what}")
    if len(changed) > limit:
        diffs.append(f"{len(changed) - limit} more array(s) differ in shape or dtype")
    return diffs


def _verify(state: PyTree, meta: dict, with_template: bool) -> str | None:
    """Raise ``ValueError`` if ``state`` does not match the digests in ``meta``; return a note
    when it could not be checked (old checkpoints read without a template)."""
    digest, leaves = _digests(state)
    stored = meta.get("leaves")
    if isinstance(stored, dict):
        if set(stored) != set(leaves):
            raise ValueError("the arrays read back are not the ones recorded at save time")
        bad = [k for k in sorted(leaves) if leaves[k] != stored[k]]
        if bad:
            raise ValueError(f"array contents do not match the digest recorded at save time ({len(bad)} array(s), "
                             f"e.g. '{bad[0]}')")
    if with_template:
        if meta.get("digest") != digest:
            raise ValueError("array contents do not match the digest recorded at save time")
    elif not isinstance(stored, dict):
        return "saved before per-array digests; without a template its contents were not verified"
    return None


def _probe_directory(directory: Path, name: str) -> None:
    """Make ``directory`` and check that files can be created in it (``ValueError`` naming ``name``)."""
    check_writable_dir(directory, name, "checkpoints and the loss log")


def _DirLock(directory: Path, name: str) -> DirLock:
    """The training run's exclusive lock on ``<directory>/.lock`` (:class:`CheckpointLocked` when held)."""
    return DirLock(directory, name, lock_name=LOCK_FILE, locked=CheckpointLocked, run="training run",
                   busy="wait for it to finish, stop it, or choose another directory (two runs writing one "
                        "checkpoint directory would overwrite each other's steps)")


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

    On construction the directory is created and checked to be writable (``ValueError``
    naming ``name``, the caller's argument, otherwise) and, with ``lock=True``, an exclusive
    lock on ``<directory>/.lock`` is taken and held until ``close()``; a directory locked by
    another process or Checkpointer raises :class:`CheckpointLocked`. In a multi-process
    (multi-host) run only process 0 takes the lock.
    """

    def __init__(self, directory, keep: int = 3, *, lock: bool = True, name: str = "directory"):
        if isinstance(keep, bool) or int(keep) != keep or keep < 1:
            raise ValueError(f"keep: expected a positive int, got {keep!r}")
        self.directory = Path(directory).absolute()
        self._name = name
        self._lock = None
        self._mgr = None
        _probe_directory(self.directory, name)
        if lock and jax.process_index() == 0:
            self._lock = _DirLock(self.directory, name)
        try:
            self._mgr = _manager(self.directory, int(keep))
        except BaseException:
            self.close()
            raise

    def save(self, step: int, state: PyTree, meta: dict | None = None) -> None:
        meta = dict(meta or {})
        meta["digest"], meta["leaves"] = _digests(state)
        meta["step"] = int(step)
        self._mgr.save(int(step), args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                           meta=ocp.args.JsonSave(meta)), force=True)
        self._mgr.wait_until_finished()

    def all_steps(self) -> list[int]:
        return sorted(self._mgr.all_steps())

    def latest_good(self, template: PyTree) -> Restored | None:
        """:func:`latest_good` of this directory through this Checkpointer's own manager."""
        found = _latest(self._mgr, self.directory, template, self._name, stacklevel=3)
        self._mgr.reload()          # steps may have been moved aside
        return found

    def read_meta(self, step: int) -> dict | None:
        """The ``meta`` JSON saved at ``step`` (no arrays are read), or None if unreadable."""
        try:
            return dict(self._mgr.restore(int(step), args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta)
        except Exception:  # noqa: BLE001 - only used to describe a checkpoint
            return None

    def clear(self) -> list[int]:
        """Delete every checkpoint step in the directory (steps moved aside as ``.corrupt`` and
        files of other programs stay). Returns the deleted steps."""
        steps = self.all_steps()
        for step in steps:
            self._mgr.delete(step)
        self._mgr.reload()
        return steps

    def close(self) -> None:
        try:
            if self._mgr is not None:
                self._mgr.close()
        finally:
            self._mgr = None
            if self._lock is not None:
                self._lock.release()
                self._lock = None

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


def _latest(mgr: ocp.CheckpointManager, directory: Path, template: PyTree | None, name: str,
            stacklevel: int) -> Restored | None:
    """The body of :func:`latest_good` on an open manager."""
    try:
        steps = sorted(mgr.all_steps(), reverse=True)
    except Exception as err:  # noqa: BLE001 - unreadable directory metadata: start fresh, loudly
        warnings.warn(f"checkpoint directory '{directory}' could not be listed ({_why(err)}); "
                      f"starting from scratch", stacklevel=stacklevel)
        return None
    if not steps:
        return None
    want = None if template is None else _layout_of_template(template)
    abstract = None if template is None else _abstract(template)
    bad: list[tuple[int, str]] = []
    notes: list[str] = []
    found = None
    for step in steps:
        try:
            stored = _stored_layout(mgr, step)
        except Exception as err:  # noqa: BLE001 - metadata unreadable: the step is corrupt, not foreign
            bad.append((step, f"its array metadata cannot be read: {_why(err)}"))
            continue
        if want is not None:
            diffs = _layout_differences(stored, want)
            if diffs:    # a different model / state structure: another run, never corruption
                raise CheckpointMismatch(directory, step, ["model or state structure: " + "; ".join(diffs)],
                                         name=name)
        try:
            state_args = ocp.args.StandardRestore(abstract) if abstract is not None else ocp.args.StandardRestore()
            out = mgr.restore(step, args=ocp.args.Composite(state=state_args, meta=ocp.args.JsonRestore()))
            meta = dict(out.meta)
            note = _verify(out.state, meta, with_template=template is not None)
            if note:
                notes.append(f"checkpoint step {step} in '{directory}' was {note}")
            found = Restored(int(step), out.state, meta)
            break
        except Exception as err:  # noqa: BLE001 - any failure of a step of the right structure: corrupt
            bad.append((step, _why(err)))
    for step, why in bad:
        if template is not None:
            moved = _move_aside(directory, step)
            where = f"moved to '{moved.name}'" if moved is not None else "left in place"
        else:
            where = "left in place (latest_good without a template never moves files)"
        fallback = f"falling back to step {found.step}" if found is not None else "no older step left"
        warnings.warn(f"checkpoint step {step} in '{directory}' is unreadable ({why}); {where}; {fallback}",
                      stacklevel=stacklevel)
    for note in notes:
        warnings.warn(note, stacklevel=stacklevel)
    if found is None:
        warnings.warn(f"no readable checkpoint in '{directory}' (tried steps {[s for s, _ in bad]}); "
                      f"starting from scratch", stacklevel=stacklevel)
    return found


def latest_good(directory, template: PyTree | None = None) -> Restored | None:
    """Restore the newest readable checkpoint in ``directory``, or ``None``.

    ``template``: a pytree with the structure, shapes, dtypes (and shardings) of the saved
    state; restored arrays take its shardings. Without a template orbax's own metadata is
    used (nested dicts, host-local arrays) and the arrays are checked against the per-array
    digests recorded at save time.

    Steps are tried newest first. Each step's array metadata is read first: if its names,
    shapes or dtypes differ from ``template``'s, :class:`CheckpointMismatch` is raised (the
    checkpoint belongs to another run; nothing is moved). A step of the right structure that
    fails to restore, or whose arrays do not match the digests recorded at save time (and a
    step whose metadata cannot be read at all), triggers a ``UserWarning`` naming the
    directory, the bad step and the step it falls back to; with a template the bad step
    directory is renamed ``<step>.corrupt`` (never deleted) so later saves of that step
    number cannot collide; without one nothing is ever renamed. Never raises for unreadable
    checkpoints; a missing or empty directory returns ``None`` silently. Reads only: takes
    no lock.
    """
    directory = Path(directory).absolute()
    if not directory.is_dir():
        return None
    try:
        mgr = _manager(directory, create=False)
    except Exception as err:  # noqa: BLE001 - unreadable directory metadata: start fresh, loudly
        warnings.warn(f"checkpoint directory '{directory}' could not be listed ({_why(err)}); "
                      f"starting from scratch", stacklevel=2)
        return None
    try:
        return _latest(mgr, directory, template, "directory", stacklevel=3)
    finally:
        mgr.close()


# ----------------------------------------------------------------------------- whole models
MODEL_FORMAT = "jaxdecomp.model"
MODEL_FORMAT_VERSION = 1
_MODEL_JSON = "model.json"
_WEIGHTS = "weights"


def _sha256(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _file_digests(root: Path) -> dict:
    """``{relative path: sha256 hex}`` of every file under ``root`` (sorted)."""
    return {f.relative_to(root).as_posix(): _sha256(f) for f in sorted(p for p in root.rglob("*") if p.is_file())}


def _shapes(tree) -> list:
    return [(jax.tree_util.keystr(k), tuple(np.shape(v)), str(np.dtype(v.dtype))) for k, v in
            jax.tree_util.tree_leaves_with_path(tree)]


def _check_spec(spec, model) -> None:
    """Raise ``ValueError`` naming ``spec`` unless it builds a network shaped like ``model``."""
    from jaxdecomp.diffusion.models import build_denoiser

    try:
        abstract = nnx.eval_shape(lambda: build_denoiser(spec))
    except (TypeError, ValueError) as err:
        raise ValueError(f"spec: does not describe a buildable network: {err}") from err
    want, got = _shapes(nnx.state(model)), _shapes(nnx.state(abstract))
    if want != got:
        diff = next(((a, b) for a, b in zip(want, got) if a != b), (len(want), len(got)))
        raise ValueError(f"spec: describes a network whose variables differ from model's (first difference: {diff})")


def _is_model_dir(path: Path) -> bool:
    return (path / _MODEL_JSON).is_file() or (path / "_CHECKPOINT_METADATA").is_file()


def save_model(path, model: nnx.Module, *, overwrite: bool = False, spec: dict | None = None,
               metadata: dict | None = None) -> Path:
    """Save an NNX ``model`` to the directory ``path``: architecture, weights and digests.

    The directory holds ``model.json`` (format tag, the architecture ``spec`` of
    :mod:`jaxdecomp.diffusion.models`, the :func:`tree_digest` of every variable, the SHA-256 of
    every weight file and ``metadata``) and ``weights/`` (orbax, params and buffers). It is
    written to a temporary sibling directory and renamed into place, so an interrupted save
    never leaves a half-written model under ``path``.

    spec: the architecture; default :func:`~jaxdecomp.diffusion.models.model_spec` of ``model``
      for the package's networks (``None`` for other modules: loading them needs a template).
      A given spec must build a network with the same variables as ``model``.
    metadata: a JSON-serialisable dict stored alongside (e.g. the encoder the model was
      trained with, training steps); read it back with :func:`model_info`.
    overwrite: replace an existing saved model at ``path`` (a directory that is not a saved
      model, other than an empty one, is never replaced).

    Raises ``FileExistsError`` if ``path`` exists and ``overwrite`` is False. Returns the path.
    Call from one process (a multi-host run should save from a single host).
    """
    from jaxdecomp.diffusion.models import model_spec

    if not isinstance(model, nnx.Module):
        raise TypeError(f"model: expected a flax.nnx.Module, got {type(model).__name__}")
    path = Path(path).absolute()
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"path: '{path}' already exists; pass overwrite=True to replace it")
        if not path.is_dir() or (any(path.iterdir()) and not _is_model_dir(path)):
            raise FileExistsError(f"path: '{path}' exists and is not a saved model; refusing to replace it")
    if spec is None:
        try:
            spec = model_spec(model)
        except TypeError:
            spec = None
    else:
        if not isinstance(spec, dict):
            raise TypeError(f"spec: expected a dict (see jaxdecomp.diffusion.denoiser_spec), got {type(spec).__name__}")
        _check_spec(spec, model)
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"metadata: expected a dict, got {type(metadata).__name__}")
    for name, value in (("spec", spec), ("metadata", metadata)):
        try:
            json.dumps(value)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name}: expected JSON-serialisable values ({err})") from err
    state = nnx.state(model)
    info = dict(format=MODEL_FORMAT, version=MODEL_FORMAT_VERSION, model_class=type(model).__name__, spec=spec,
                digest=tree_digest(state), metadata=dict(metadata or {}))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save(tmp / _WEIGHTS, state)
            ckptr.wait_until_finished()
        info["files"] = _file_digests(tmp / _WEIGHTS)
        (tmp / _MODEL_JSON).write_text(json.dumps(info, indent=1))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    swap_into_place(tmp, path)
    return path


def _read_info(path: Path) -> dict:
    """``model.json`` of the saved model at ``path``; clear errors for anything else."""
    if not path.exists():
        raise FileNotFoundError(f"path: no saved model at '{path}'")
    if not path.is_dir():
        raise ValueError(f"path: '{path}' is a file, not a model directory written by save_model")
    js = path / _MODEL_JSON
    if not js.is_file():
        hint = ""
        if any(p.is_dir() and p.name.isdigit() for p in path.iterdir()):
            hint = " It looks like a training checkpoint directory; restore those with checkpoint.latest_good."
        raise ValueError(f"path: '{path}' is not a model saved by save_model (no {_MODEL_JSON}).{hint}")
    try:
        info = json.loads(js.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"path: '{js}' is corrupt or truncated ({type(err).__name__}: {err})") from err
    if not isinstance(info, dict) or info.get("format") != MODEL_FORMAT:
        raise ValueError(f"path: '{js}' is not a jaxdecomp model description (format "
                         f"{info.get('format') if isinstance(info, dict) else None!r}, expected {MODEL_FORMAT!r})")
    if info.get("version") != MODEL_FORMAT_VERSION:
        raise ValueError(f"path: '{js}' has model format version {info.get('version')!r}; this jaxdecomp reads "
                         f"version {MODEL_FORMAT_VERSION}")
    return info


def model_info(path) -> dict:
    """What :func:`save_model` recorded at ``path``, without loading the weights.

    Returns a dict with ``spec`` (architecture, or None), ``metadata`` (the caller's dict),
    ``digest`` (of the variables), ``model_class``, ``files`` (SHA-256 per weight file),
    ``format`` and ``version``. Raises ``FileNotFoundError`` / ``ValueError`` naming ``path``.
    """
    return _read_info(Path(path).absolute())


def _verify_files(path: Path, info: dict) -> None:
    files = info.get("files")
    if not isinstance(files, dict) or not files:
        raise ValueError(f"path: '{path / _MODEL_JSON}' lists no weight files; the model description is corrupt")
    for rel, want in files.items():
        f = path / _WEIGHTS / rel
        if not f.is_file():
            raise ValueError(f"path: saved model at '{path}' is incomplete: weight file '{_WEIGHTS}/{rel}' is missing")
        if _sha256(f) != want:
            raise ValueError(f"path: saved model at '{path}' is corrupt: weight file '{_WEIGHTS}/{rel}' does not "
                             f"match the SHA-256 recorded at save time (truncated or altered bytes)")


def _restore(weights: Path, graphdef, abstract_state, what: str) -> nnx.Module:
    try:
        with ocp.StandardCheckpointer() as ckptr:
            restored = ckptr.restore(weights, _abstract(abstract_state))
    except Exception as err:  # noqa: BLE001 - orbax / TensorStore errors: say what failed, keep the cause
        first = str(err).splitlines()[0][:300] if str(err) else ""
        raise ValueError(f"{what} ({type(err).__name__}: {first})") from err
    return nnx.merge(graphdef, restored)


def load_model(path, model_template: nnx.Module | None = None) -> nnx.Module:
    """Load a model saved by :func:`save_model`, rebuilt from its recorded architecture.

    The weight files' SHA-256 digests are checked before reading and the variables' digest
    after; a mismatch, a truncated or missing file, or a directory that is not a saved model
    raises ``ValueError`` naming ``path`` (``FileNotFoundError`` if nothing is there).

    model_template: optional (backward compatibility, and the only way to load a module saved
    without a spec): a module with the same architecture whose structure, dtypes and
    shardings the loaded model takes (its values are ignored, it is not modified). Also reads
    directories written by the earlier ``save_model`` (orbax weights only, no ``model.json``),
    without digest checks.
    """
    from jaxdecomp.diffusion.models import build_denoiser

    path = Path(path).absolute()
    if model_template is not None and not isinstance(model_template, nnx.Module):
        raise TypeError(f"model_template: expected a flax.nnx.Module or None, got {type(model_template).__name__}")
    if (model_template is not None and path.is_dir() and not (path / _MODEL_JSON).exists()
            and (path / "_CHECKPOINT_METADATA").is_file()):
        graphdef, state = nnx.split(model_template)
        return _restore(path, graphdef, state, f"path: could not read a model like model_template from '{path}'")
    info = _read_info(path)
    _verify_files(path, info)
    if model_template is not None:
        graphdef, abstract = nnx.split(model_template)
        what = f"model_template: does not match the model saved at '{path}'"
    else:
        if info.get("spec") is None:
            raise ValueError(f"model_template: the model at '{path}' ({info.get('model_class')}) was saved without "
                             f"an architecture spec; pass a model_template built like it")
        try:
            graphdef, abstract = nnx.split(nnx.eval_shape(lambda: build_denoiser(info["spec"])))
        except (TypeError, ValueError) as err:
            raise ValueError(f"path: '{path / _MODEL_JSON}' holds an unusable architecture spec: {err}") from err
        what = f"path: could not read the weights of the model at '{path}'"
    model = _restore(path / _WEIGHTS, graphdef, abstract, what)
    if tree_digest(nnx.state(model)) != info.get("digest"):
        raise ValueError(f"path: the weights read from '{path}' do not match the digest recorded at save time")
    return model
