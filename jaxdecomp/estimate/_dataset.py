"""Dataset-scale I_local pixel maps: sharded over devices (and hosts), streamed in chunks to a resumable store.

:func:`decompose_dataset` computes, for each of ``N`` stimuli, what :func:`jaxdecomp.estimate.pixel_maps`
computes for a batch (the I_local map, its total and Monte Carlo standard error, and the population's
Fisher diagonal), but for data sets that do not fit one call:

* **Sharded.** The stimuli of a chunk are split over a 1-D ``Mesh`` of all devices (axis ``"data"``,
  ``jax.sharding.NamedSharding``); the denoiser, the population and the quadrature are replicated.
  Each device maps its stimuli one at a time (``jax.lax.map`` inside ``jax.shard_map``), so device
  memory is that of one :func:`~jaxdecomp.estimate.ilocal` call with ``chunk=eval_chunk``, whatever the
  chunk or data-set size. The same code runs on one CPU, on several devices and on several hosts
  (``jax.distributed.initialize()`` first; see "Multi-host").
* **Independent of chunking, device count and resume.** Stimulus ``i`` (its global index) uses the
  key ``jax.random.fold_in(key, i)`` and the same single-stimulus program, so its map equals
  ``ilocal(fold_in(key, i), denoiser, population, x[i], ...)`` whatever ``chunk``, the number of
  devices or hosts, and however often the run was interrupted (to float rounding: XLA may order
  reductions differently in programs of different batch shapes).
* **Streamed to a store, resumable.** With ``store`` (a directory), each finished chunk is written
  at once as ``chunk_<k>.npz`` (temporary file + ``os.replace``, so a killed run never leaves a
  half-written chunk under a chunk name) next to ``manifest.json``, which records the store's
  layout and a fingerprint of everything that determines the numbers. A later call with the same
  inputs continues: finished chunks are read back, never recomputed. A store written with other
  inputs or settings is refused (:class:`StoreMismatch`, listing what differs; nothing is touched)
  unless ``overwrite=True``; ``resume`` / ``overwrite`` follow :func:`jaxdecomp.diffusion.train`.
  The store is locked (``<store>/.lock``) for the run: a second run on it stops at once
  (:class:`StoreLocked`).

The fingerprint: the stimuli (shape, dtype and SHA-256 of ``x`` as given: all bytes up to 256 MiB,
beyond that 4096 evenly spaced stimuli), the key, the denoiser and the
population (their types and a SHA-256 of every array leaf, with its path, dtype and shape; a plain
Python function is identified by its module and name only, not by what it closes over), the
quadrature (nodes, weights, range, tails), ``n_samples``, ``n_steps``, ``response_sampler``,
``fisher_correction`` and ``fisher``. Not in it: ``eval_chunk``, ``progress``, ``return_maps`` (they
change memory or output, not the numbers) and the device count. ``chunk`` is the store's layout: a
store continues only with the ``chunk`` it was written with.

Multi-host. After ``jax.distributed.initialize()`` every process calls :func:`decompose_dataset`
with the same arguments (the same ``x`` on every host, as for :func:`~jaxdecomp.diffusion.train`).
The mesh spans all processes' devices; results are all-gathered, so every process gets the maps.
Process 0 alone locks, checks and writes the store and tells the others which chunks are finished;
with ``return_maps=True`` the others read those finished chunks back, so the store must be on a
file system every host sees (as orbax checkpoints must). See ``docs/scale.md``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import warnings
from functools import partial
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from jaxdecomp._checks import RESUME_MODES, check_key, check_resume
from jaxdecomp._files import DirLock, array_fingerprint, check_writable_dir
from jaxdecomp.diffusion.checkpoint import CheckpointLocked
from jaxdecomp.diffusion.schedules import Levels, network_levels
from jaxdecomp.estimate._estimators import (
    RESPONSE_SAMPLERS,
    _as_pytree,
    _check_count,
    _check_population,
    _check_population_matches,
    _ilocal_jit,
    _nodes,
    _stimulus_shape,
    check_levels,
)


__all__ = ["RESUME_MODES", "StoreLocked", "StoreMismatch", "decompose_dataset", "load_dataset_maps"]

FORMAT = "jaxdecomp-dataset-maps"
VERSION = 1
MANIFEST = "manifest.json"
LOCK_FILE = ".lock"
_CHUNK_RE = re.compile(r"^chunk_(\d{6,})\.npz$")
_AXIS = "data"


class StoreMismatch(ValueError):
    """The store was written by a run with other inputs or settings; nothing in it was changed.

    Attributes: ``directory`` (Path) and ``differences`` (one line each, e.g. ``"n_samples: 16 now,
    8 in the store"``)."""

    def __init__(self, directory, differences, *, name: str = "store", hint: str = ""):
        self.directory, self.differences = Path(directory), list(differences)
        msg = (f"{name}: '{self.directory}' holds maps written with other inputs or settings "
               f"({'; '.join(self.differences)}); nothing was changed")
        super().__init__(msg + (f". {hint}" if hint else ""))


class StoreLocked(CheckpointLocked):
    """Another run (process) is writing to the store."""


_HINT = ("To continue it, call again with the inputs and settings it was written with; to delete its maps and "
         "start afresh pass overwrite=True; or choose another store")


# ----------------------------------------------------------------------------- fingerprints
def _sha_array(a: np.ndarray) -> dict:
    return array_fingerprint(a, "stimuli")


def _callable_name(obj) -> str:
    fn = getattr(obj, "func", obj)           # functools.partial / jax.tree_util.Partial
    mod = getattr(fn, "__module__", None) or type(fn).__module__
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{mod}.{name}"


def _tree_fingerprint(tree) -> dict:
    """Type and SHA-256 of the array leaves (path, dtype, shape, bytes) of a pytree."""
    h = hashlib.sha256()
    n = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        h.update(jax.tree_util.keystr(path).encode())
        if isinstance(leaf, (jax.Array, np.ndarray, np.generic, float, int, bool, complex)):
            arr = np.asarray(jax.device_get(leaf))
            if jnp.issubdtype(arr.dtype, jax.dtypes.prng_key):
                arr = np.asarray(jax.random.key_data(leaf))
            h.update(f"{arr.dtype}{arr.shape}".encode())
            h.update(np.ascontiguousarray(arr).tobytes())
            n += 1
        else:
            h.update(_callable_name(leaf).encode())
    kind = type(tree)
    name = _callable_name(tree) if n == 0 and callable(tree) else f"{kind.__module__}.{kind.__qualname__}"
    return {"type": name, "arrays": n, "sha256": h.hexdigest()}


def _key_words(key) -> list:
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return {"impl": str(jax.random.key_impl(key)),
                "data": [int(v) for v in np.asarray(jax.random.key_data(key)).ravel()]}
    return [int(v) for v in np.asarray(key).ravel()]


def _levels_json(lv: Levels) -> dict:
    return {"log_snr": [float(v) for v in np.asarray(lv.log_snr, np.float64)],
            "weights": [float(v) for v in np.asarray(lv.weights, np.float64)],
            "lo": float(lv.lo), "hi": float(lv.hi), "tails": bool(lv.tails)}


def _digest(fp: dict) -> str:
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()


def _short(v) -> str:
    text = json.dumps(v) if not isinstance(v, str) else v
    return text if len(text) <= 60 else text[:57] + "..."


def _differences(old: dict, new: dict) -> list[str]:
    """What differs between a store's manifest and the current call (one line each)."""
    if old.get("format") != FORMAT or not isinstance(old.get("fingerprint"), dict):
        return [f"'{MANIFEST}' is not a {FORMAT} manifest"]
    if old.get("version") != VERSION:
        return [f"store format version {old.get('version')} (this jaxdecomp reads version {VERSION})"]
    diffs = []
    o, n = old["fingerprint"], new["fingerprint"]
    ox, nx = o.get("x") or {}, n["x"]
    if ox != nx:
        if ox.get("shape") != nx["shape"] or ox.get("dtype") != nx["dtype"]:
            diffs.append(f"x: shape {tuple(nx['shape'])} {nx['dtype']} now, {tuple(ox.get('shape') or ())} "
                         f"{ox.get('dtype')} in the store")
        else:
            diffs.append(f"x: same shape {tuple(nx['shape'])} but different values (sha256 {nx['sha256'][:12]}... "
                         f"now, {str(ox.get('sha256'))[:12]}... in the store)")
    if o.get("key") != n["key"]:
        diffs.append("key: a different PRNG key than the run that wrote it")
    for name in ("denoiser", "population"):
        a, b = o.get(name) or {}, n[name]
        if a != b:
            if a.get("type") != b["type"]:
                diffs.append(f"{name}: a {b['type']} now, a {a.get('type')} in the store")
            else:
                diffs.append(f"{name}: same type {b['type']} but different parameters (sha256 {b['sha256'][:12]}... "
                             f"now, {str(a.get('sha256'))[:12]}... in the store)")
    os_, ns = o.get("settings") or {}, n["settings"]
    for k in sorted(set(os_) | set(ns)):
        if os_.get(k) != ns.get(k):
            if k == "levels":
                lo_, ln = os_.get(k) or {}, ns[k]
                diffs.append(f"levels: {len(ln['log_snr'])} nodes on [{ln['lo']:g}, {ln['hi']:g}] now, "
                             f"{len(lo_.get('log_snr') or [])} on [{lo_.get('lo')}, {lo_.get('hi')}] in the store "
                             f"(n_levels / levels)" if lo_.get("log_snr") != ln["log_snr"] or lo_.get("lo") != ln["lo"]
                             or lo_.get("hi") != ln["hi"] else "levels: different quadrature weights or tails")
            else:
                diffs.append(f"{k}: {_short(ns.get(k))} now, {_short(os_.get(k))} in the store")
    if old.get("chunk") != new["chunk"]:
        diffs.append(f"chunk: {new['chunk']} now, {old.get('chunk')} in the store (its layout: pass "
                     f"chunk={old.get('chunk')} to continue it)")
    return diffs


# ----------------------------------------------------------------------------- the store on disk
def _chunk_path(directory: Path, k: int) -> Path:
    return directory / f"chunk_{k:06d}.npz"


def _atomic_write(path: Path, write: Callable) -> None:
    """Write ``path`` through a temporary file in the same directory and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def _write_json(path: Path, obj: dict) -> None:
    _atomic_write(path, lambda f: f.write(json.dumps(obj, indent=1).encode()))


def _read_manifest(directory: Path) -> dict | None:
    path = directory / MANIFEST
    if not path.exists():
        return None
    try:
        obj = json.loads(path.read_text())
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        return obj
    except (OSError, ValueError) as err:
        raise ValueError(f"store: '{path}' is unreadable ({type(err).__name__}: {err}); it is not a store written "
                         f"by decompose_dataset, or it was damaged: pass overwrite=True to replace it, or choose "
                         f"another store") from None


def _store_files(directory: Path) -> list[Path]:
    """The files a store owns (manifest, chunks, temporaries); other files are never touched."""
    out = []
    for p in directory.iterdir():
        if p.name == MANIFEST or _CHUNK_RE.match(p.name) or (p.name.startswith(".chunk_") and ".tmp-" in p.name) \
                or (p.name.startswith(f".{MANIFEST}.tmp-")):
            out.append(p)
    return out


def _clear(directory: Path) -> int:
    files = _store_files(directory)
    for p in files:
        p.unlink()
    return len(files)


def _chunk_ok(path: Path, digest: str, start: int, stop: int, fields, shape) -> bool:
    """Whether ``path`` is a complete chunk of this store (its digest, range and array shapes)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["digest"]) != digest or int(z["start"]) != start or int(z["stop"]) != stop:
                return False
            n = stop - start
            for f in fields:
                want = (n,) + (tuple(shape) if f in ("ilocal", "fisher") else ())
                if tuple(z[f].shape) != want:
                    return False
        return True
    except Exception:  # noqa: BLE001 - any failure to read means "not finished"
        return False


def _probe_directory(directory: Path, name: str) -> None:
    """Make ``directory`` and check that files can be created in it (``ValueError`` naming ``name``)."""
    check_writable_dir(directory, name)


def _Lock(directory: Path, name: str) -> DirLock:
    """The store's exclusive lock on ``<directory>/.lock`` (:class:`StoreLocked` when held)."""
    return DirLock(directory, name, lock_name=LOCK_FILE, locked=StoreLocked, run="decompose_dataset run",
                   busy="wait for it to finish, stop it, or choose another store")


def _open_store(directory: Path, manifest: dict, resume: str, overwrite: bool, fields, shape) -> np.ndarray:
    """Check (and with ``overwrite`` clear) the store; write its manifest; return the finished-chunk mask.
    Raises before any file is changed when the store cannot be used as asked."""
    n_chunks = manifest["n_chunks"]
    try:
        old = _read_manifest(directory)
    except ValueError:
        if not overwrite:
            raise
        old = {"format": None}                  # unreadable: replaced below
    has_chunks = any(_CHUNK_RE.match(p.name) for p in directory.iterdir())
    if resume == "never":
        if (old is not None or has_chunks) and not overwrite:
            raise FileExistsError(f"store: '{directory}' already holds maps and resume='never'; pass overwrite=True "
                                  f"to delete them and start afresh, resume='auto' to continue them, or choose "
                                  f"another store")
        if old is not None or has_chunks:
            warnings.warn(f"store: deleting the maps in '{directory}' (resume='never', overwrite=True); starting "
                          f"afresh", stacklevel=4)
        old = None
    elif old is None and not has_chunks:
        if resume == "must":
            raise FileNotFoundError(f"store: resume='must' but '{directory}' holds no store ({MANIFEST} is missing)")
    else:
        diffs = (_differences(old, manifest) if old is not None
                 else [f"chunk files but no {MANIFEST} (not a store of this run, or its manifest was lost)"])
        if diffs and not overwrite:
            raise StoreMismatch(directory, diffs, hint=_HINT)
        if diffs:
            warnings.warn(f"store: deleting the maps in '{directory}' because overwrite=True and they were written "
                          f"with other inputs or settings ({'; '.join(diffs)}); starting afresh", stacklevel=4)
            old = None
    done = np.zeros(n_chunks, bool)
    if old is None:
        _clear(directory)
        _write_json(directory / MANIFEST, manifest)
        return done
    digest, chunk, n = manifest["digest"], manifest["chunk"], manifest["n_stimuli"]
    for p in _store_files(directory):           # temporaries of a killed run
        if p.name.startswith("."):
            p.unlink()
    for k in range(n_chunks):
        path = _chunk_path(directory, k)
        if path.exists():
            done[k] = _chunk_ok(path, digest, k * chunk, min(n, (k + 1) * chunk), fields, shape)
            if not done[k]:
                aside = path.with_name(path.name + ".corrupt")
                os.replace(path, aside)
                warnings.warn(f"store: '{path}' is unreadable or not a chunk of this store; moved aside to "
                              f"'{aside.name}' and recomputing it", stacklevel=4)
    if bool(old.get("complete")) != bool(done.all()):
        _write_json(directory / MANIFEST, dict(manifest, complete=bool(done.all())))
    return done


def load_dataset_maps(store) -> dict:
    """The maps of a store written by :func:`decompose_dataset`, as numpy arrays (see its Returns).

    Raises ``FileNotFoundError`` when ``store`` holds no manifest and ``ValueError`` when a chunk is
    missing or damaged (an unfinished run: call :func:`decompose_dataset` again to finish it)."""
    directory = Path(store)
    manifest = _read_manifest(directory)
    if manifest is None:
        raise FileNotFoundError(f"store: '{directory}' holds no {MANIFEST} (not a decompose_dataset store)")
    if manifest.get("format") != FORMAT:
        raise ValueError(f"store: '{directory / MANIFEST}' is not a {FORMAT} manifest")
    n, chunk, fields, shape = manifest["n_stimuli"], manifest["chunk"], manifest["fields"], manifest["stimulus_shape"]
    parts = {f: [] for f in fields}
    for k in range(manifest["n_chunks"]):
        path = _chunk_path(directory, k)
        if not _chunk_ok(path, manifest["digest"], k * chunk, min(n, (k + 1) * chunk), fields, shape):
            raise ValueError(f"store: chunk {k} ('{path.name}') of '{directory}' is missing or damaged; the run "
                             f"did not finish: call decompose_dataset again with the same arguments to finish it")
        with np.load(path, allow_pickle=False) as z:
            for f in fields:
                parts[f].append(z[f])
    return {f: np.concatenate(v) for f, v in parts.items()}


# ----------------------------------------------------------------------------- the sharded program
def _replicate(tree, sharding):
    """Every array leaf of ``tree`` as a global array replicated with ``sharding`` (works across hosts:
    each process supplies its own, identical, copy)."""
    def one(leaf):
        if isinstance(leaf, (jax.Array, np.ndarray, np.generic)):
            host = np.asarray(jax.device_get(leaf))
            return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])
        return leaf
    return jax.tree.map(one, tree)


def _global(host: np.ndarray, sharding):
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


@partial(jax.jit, static_argnames=("mesh", "impl", "n_samples", "sampler", "n_steps", "eval_chunk", "fisher_tail",
                                   "fisher"))
def _sharded_maps(key_data, idx, xs, denoiser, population, nodes, weights, g_hi, *, mesh, impl, n_samples, sampler,
                  n_steps, eval_chunk, fisher_tail, fisher):
    """Maps of the stimuli ``xs (C, *S)`` with global indices ``idx (C,)``; ``C`` is split over ``mesh``,
    the results are replicated."""

    def local(key_data, idx, xs, denoiser, population, nodes, weights, g_hi):
        key = key_data if impl is None else jax.random.wrap_key_data(key_data, impl=impl)

        def one(ix):
            i, xi = ix
            res = _ilocal_jit(jax.random.fold_in(key, i), denoiser, population, xi, nodes, weights, g_hi,
                              n_samples=n_samples, sampler=sampler, n_steps=n_steps, chunk=eval_chunk,
                              fisher_tail=fisher_tail, batched=False, score_gradient=False)
            out = {"ilocal": res.map, "ilocal_total": res.total, "ilocal_se": res.stderr}
            if fisher:
                out["fisher"] = population.fisher_diag(xi).astype(xi.dtype)
            return out

        out = jax.lax.map(one, (idx, xs))
        # gathered on every device: the host reads a fully replicated array on every process
        return jax.tree.map(lambda v: jax.lax.all_gather(v, _AXIS, tiled=True), out)

    data, repl = P(_AXIS), P()
    fn = jax.shard_map(local, mesh=mesh, in_specs=(repl, data, data, repl, repl, repl, repl, repl), out_specs=repl,
                       check_vma=False)
    return fn(key_data, idx, xs, denoiser, population, nodes, weights, g_hi)


# ----------------------------------------------------------------------------- validation
def _check_resume_args(resume, overwrite) -> None:
    check_resume(resume, overwrite, "maps")


def _check_stimuli(x, shape) -> np.ndarray:
    """``x`` as a host array ``(N, *shape)``, not copied (converted to the float dtype one chunk at a time)."""
    if isinstance(x, jax.core.Tracer):
        raise TypeError("x: expected concrete stimuli (a numpy or jax array), got a tracer: decompose_dataset is a "
                        "host loop and cannot run under jit / vmap / grad (use jaxdecomp.estimate.ilocal there)")
    try:
        host = np.asarray(x)
    except Exception as err:  # noqa: BLE001
        raise TypeError(f"x: expected a numeric array, got {type(x).__name__}") from err
    if not (np.issubdtype(host.dtype, np.number) or host.dtype == np.bool_):
        raise TypeError(f"x: expected a numeric array, got dtype {host.dtype} ({type(x).__name__})")
    if host.ndim != len(shape) + 1 or tuple(host.shape[1:]) != tuple(shape) or host.shape[0] < 1:
        raise ValueError(f"x: expected a batch of stimuli (N, *{tuple(shape)}) with N >= 1, got {tuple(host.shape)}")
    if np.issubdtype(host.dtype, np.inexact):
        step = max(1, (64 << 20) // max(host[0].nbytes, 1))      # ~64 MiB at a time (memmaps stay on disk)
        for s in range(0, host.shape[0], step):
            if not np.all(np.isfinite(host[s:s + step])):
                raise ValueError("x: contains NaN or infinite values")
    return host


# ----------------------------------------------------------------------------- the entry point
def decompose_dataset(key, denoiser, population, x, store=None, *, chunk: int = 256, n_levels: int = 32,
                      levels: Levels | None = None, n_samples: int = 16, n_steps: int = 16,
                      response_sampler: str = "posterior_sample", fisher_correction: bool = True,
                      fisher: bool = True, eval_chunk: int = 2048, resume: str = "auto", overwrite: bool = False,
                      return_maps: bool = True, progress: bool = True, stimulus_shape=None,
                      _on_chunk: Callable[[int], object] | None = None) -> dict | None:
    """I_local (and Fisher) pixel maps of ``N`` stimuli, sharded over all devices, streamed to a resumable store.

    Args:
      key: a PRNG key; stimulus ``i`` uses ``jax.random.fold_in(key, i)``.
      denoiser: ``eps_hat = denoiser(x_noisy, log_snr, r)`` (a trained network, an analytic oracle or a
        function); replicated on every device.
      population: the encoder ``p(r | x)`` (``sample``; ``fisher_diag`` for the Fisher maps and the
        small-noise tail).
      x: stimuli ``(N, *S)`` (``S`` = ``denoiser.shape`` or ``stimulus_shape``), a numpy array (a
        ``np.memmap`` works: only one chunk is converted at a time), identical on every process.
      store: a directory for the resumable store (created if missing), or None to keep nothing on disk.
      chunk: stimuli per chunk: the unit of work between host syncs and of the store (one file each).
        Rounded up to a multiple of the device count for the computation (padding is discarded), so
        prefer a multiple of it.
      n_levels / levels: the log-SNR quadrature: ``levels`` if given, else
        :func:`~jaxdecomp.diffusion.schedules.network_levels` ``(n_levels)`` (as :func:`pixel_maps`).
      n_samples, n_steps, response_sampler, fisher_correction: as in :func:`jaxdecomp.estimate.ilocal`.
      fisher: also store the population's Fisher diagonal ``J_ii(x)`` (needs ``population.fisher_diag``).
      eval_chunk: (stimulus-level-sample) evaluations in flight per device (``ilocal``'s ``chunk``).
      resume: ``"auto"`` (default) continues a store written with the same inputs and settings, starts
        one if there is none and raises :class:`StoreMismatch` if it was written with others;
        ``"must"`` is the same but raises ``FileNotFoundError`` when there is no store to continue;
        ``"never"`` always starts afresh and raises ``FileExistsError`` if a store is there.
      overwrite: allow deleting the store's files (its manifest and chunks; nothing else in the directory)
        when they cannot be continued: with ``"never"`` always, with ``"auto"`` only when they were written
        with other inputs or settings (a matching store is still continued). A warning says so.
      return_maps: return the maps (all ``N`` in host memory); False returns None and keeps host
        memory at one chunk (read the maps later with :func:`load_dataset_maps`).
      progress: a tqdm bar over stimuli (process 0 only).

    Returns (``return_maps``) a dict of numpy arrays as :func:`jaxdecomp.estimate.pixel_maps`:
    ``ilocal (N, *S)`` nats per pixel, ``ilocal_total (N,)``, ``ilocal_se (N,)`` (Monte Carlo standard
    error of the total) and, with ``fisher``, ``fisher (N, *S)``.

    Raises: TypeError / ValueError naming the argument on bad input (before any work or file change);
    :class:`StoreMismatch`, ``FileExistsError``, ``FileNotFoundError`` as under ``resume``;
    :class:`StoreLocked` when another run holds the store.
    """
    # ---- validate everything before touching devices or files
    if response_sampler not in RESPONSE_SAMPLERS:
        raise ValueError(f"response_sampler: expected one of {RESPONSE_SAMPLERS}, got {response_sampler!r}")
    _check_population(population)
    key = check_key(key)
    chunk = _check_count("chunk", chunk)
    n_samples = _check_count("n_samples", n_samples, 2)
    n_steps = _check_count("n_steps", n_steps)
    eval_chunk = _check_count("eval_chunk", eval_chunk)
    for name, v in (("fisher_correction", fisher_correction), ("fisher", fisher), ("return_maps", return_maps),
                    ("progress", progress)):
        if not isinstance(v, (bool, np.bool_)):
            raise TypeError(f"{name}: expected a bool, got {type(v).__name__}")
    _check_resume_args(resume, overwrite)
    if store is not None and not isinstance(store, (str, os.PathLike)):
        raise TypeError(f"store: expected a directory path (str or os.PathLike) or None, got {type(store).__name__}")
    lv = check_levels(levels) if levels is not None else network_levels(n_levels)
    x_probe = x if stimulus_shape is not None or isinstance(getattr(denoiser, "shape", None), tuple) \
        else np.zeros(np.shape(x)[1:])
    shape = _stimulus_shape(denoiser, x_probe, stimulus_shape)
    x = _check_stimuli(x, shape)
    _check_population_matches(population, denoiser)
    fisher_tail = bool(lv.tails and fisher_correction)
    if (fisher_tail or fisher) and not callable(getattr(population, "fisher_diag", None)):
        raise TypeError("population: the Fisher maps (fisher=True) and the small-noise tail (fisher_correction=True) "
                        "need population.fisher_diag; pass fisher=False, fisher_correction=False")
    n = int(x.shape[0])
    n_chunks = math.ceil(n / chunk)
    fields = ["ilocal", "ilocal_total", "ilocal_se"] + (["fisher"] if fisher else [])
    dtype = np.dtype(jnp.result_type(float))     # float32 unless jax_enable_x64

    # ---- devices: a 1-D mesh over every device of every process
    devices = jax.devices()
    mesh = Mesh(np.array(devices), (_AXIS,))
    repl, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P(_AXIS))
    n_dev = len(devices)
    per_call = math.ceil(min(chunk, n) / n_dev) * n_dev
    multi = jax.process_count() > 1
    lead = jax.process_index() == 0

    # ---- the store
    directory = Path(store).absolute() if store is not None else None
    lock = None
    done = np.zeros(n_chunks, bool)
    digest = None
    status, error = 0, None
    try:
        if directory is not None and lead:
            fp = {"x": _sha_array(x), "key": _key_words(key), "denoiser": _tree_fingerprint(denoiser),
                  "population": _tree_fingerprint(population),
                  "settings": {"levels": _levels_json(lv), "n_samples": n_samples, "n_steps": n_steps,
                               "response_sampler": response_sampler, "fisher_correction": bool(fisher_correction),
                               "fisher": bool(fisher)}}
            digest = _digest(fp)
            manifest = {"format": FORMAT, "version": VERSION, "fingerprint": fp, "digest": digest, "n_stimuli": n,
                        "chunk": chunk, "n_chunks": n_chunks, "stimulus_shape": list(shape), "fields": fields,
                        "complete": False}
            _probe_directory(directory, "store")
            lock = _Lock(directory, "store")
            done = _open_store(directory, manifest, resume, overwrite, fields, shape)
    except BaseException as err:  # noqa: BLE001 - re-raised below, after telling the other processes
        status, error = 1, err
    if multi:
        from jax.experimental import multihost_utils

        msg = multihost_utils.broadcast_one_to_all(np.concatenate([[status], done.astype(np.int32)]).astype(np.int32))
        status, done = int(msg[0]), np.asarray(msg[1:], bool)
    if error is not None:
        if lock is not None:
            lock.release()
        raise error
    if status:
        raise RuntimeError("decompose_dataset: process 0 refused the store (see its error); nothing was computed")

    # ---- the loop over chunks
    impl = str(jax.random.key_impl(key)) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else None
    key_data = _replicate(np.asarray(jax.random.key_data(key)) if impl is not None else np.asarray(key), repl)
    den = _replicate(_as_pytree(denoiser, "denoiser"), repl)
    pop = _replicate(population, repl)
    nodes, weights = _nodes(lv, extrapolate_hi=not fisher_tail)
    nodes, weights = _replicate((np.asarray(nodes, dtype), np.asarray(weights, dtype)), repl)
    g_hi = _replicate(np.asarray(np.exp(-lv.hi), dtype), repl)
    static = dict(mesh=mesh, impl=impl, n_samples=n_samples, sampler=response_sampler, n_steps=n_steps,
                  eval_chunk=eval_chunk, fisher_tail=fisher_tail, fisher=bool(fisher))
    results: dict[int, dict] = {}
    done_n = sum(min(n, (k + 1) * chunk) - k * chunk for k in np.flatnonzero(done))
    bar = tqdm(total=n, initial=done_n, disable=not (progress and lead), desc="decompose", unit="stim",
               dynamic_ncols=True)
    try:
        for k in range(n_chunks):
            if done[k]:
                continue
            start, stop = k * chunk, min(n, (k + 1) * chunk)
            idx = np.minimum(np.arange(start, start + per_call), stop - 1).astype(np.int32)
            xs = np.asarray(x[idx], dtype)
            out = _sharded_maps(key_data, _global(idx, sharded), _global(xs, sharded), den, pop, nodes, weights,
                                g_hi, **static)
            got = {f: np.asarray(out[f])[: stop - start] for f in fields}
            for f in ("ilocal_total", "ilocal_se"):
                if not np.all(np.isfinite(got[f])):
                    bad = start + int(np.flatnonzero(~np.isfinite(got[f]))[0])
                    raise FloatingPointError(f"decompose_dataset: non-finite {f} for stimulus {bad} (chunk {k}); "
                                             f"finished chunks are kept in the store")
            if directory is not None and lead:
                arrays = dict(got, digest=np.asarray(digest), start=np.asarray(start), stop=np.asarray(stop))
                _atomic_write(_chunk_path(directory, k), lambda f: np.savez(f, **arrays))
            if return_maps:
                results[k] = got
            bar.update(stop - start)
            if _on_chunk is not None:
                _on_chunk(k)
        if directory is not None and lead:
            manifest = _read_manifest(directory)
            if not manifest.get("complete"):
                _write_json(directory / MANIFEST, dict(manifest, complete=True))
    finally:
        bar.close()
        if lock is not None:
            lock.release()
    if not return_maps:
        return None
    parts = {f: [] for f in fields}
    for k in range(n_chunks):
        if k in results:
            got = results.pop(k)
        else:
            with np.load(_chunk_path(directory, k), allow_pickle=False) as z:
                got = {f: z[f] for f in fields}
        for f in fields:
            parts[f].append(got[f])
    return {f: np.concatenate(v) for f, v in parts.items()}
