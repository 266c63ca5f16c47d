"""Multi-host: ``jax.distributed`` with 2 processes x 2 forced CPU devices on localhost (JAX's gloo CPU
collectives) against 1 process x 4 devices: the same I_local maps (``decompose_dataset``, with its store
written by process 0) and (``slow``) the same trained weights (``train``), to float tolerance.

All three processes run concurrently as subprocesses (``tests/_dataset_worker.py``) under a hard timeout.
"""

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jaxdecomp import estimate
from tests import _dataset_worker as worker
from tests._subproc import forced_devices_env

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "_dataset_worker.py"
TIMEOUT = 300          # seconds, for all three processes together

pytestmark = pytest.mark.heavy      # subprocesses: tens of seconds on a 2-core CPU
FIELDS = ("ilocal", "ilocal_total", "ilocal_se", "fisher")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _env(n_devices):
    return forced_devices_env(n_devices)


def _start(log, out, *args, n_devices):
    """The worker, its output to the file ``log`` (no pipes to fill while another process is waited on)."""
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable, str(WORKER), str(out), *map(str, args)], env=_env(n_devices),
                                stdout=f, stderr=subprocess.STDOUT, text=True)


def _launch(tmp, *extra):
    """1 process x 4 devices and 2 processes x 2 devices, concurrently; their outputs."""
    port = _free_port()
    logs = {name: tmp / f"{name}.log" for name in ("single", "p0", "p1")}
    procs = {"single": _start(logs["single"], tmp / "single.npz", "--store", tmp / "store1", *extra, n_devices=4)}
    for i in range(2):
        procs[f"p{i}"] = _start(logs[f"p{i}"], tmp / "multi.npz", "--store", tmp / "store2", "--num-processes", 2,
                                "--process-id", i, "--port", port, *extra, n_devices=2)
    deadline = time.monotonic() + TIMEOUT      # one deadline for all: a hung collective must not hang the suite
    try:
        for name, p in procs.items():
            try:
                p.wait(timeout=max(deadline - time.monotonic(), 1))
            except subprocess.TimeoutExpired:
                pytest.fail(f"multi-host worker {name} did not finish within {TIMEOUT} s: "
                            f"{logs[name].read_text()[-3000:]}")
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    out = {name: log.read_text() for name, log in logs.items()}
    for name, p in procs.items():
        assert p.returncode == 0, f"{name}: {out[name][-3000:]}"
    info = {name: json.loads([ln for ln in text.splitlines() if ln.startswith('{"devices"')][-1])
            for name, text in out.items()}
    return dict(tmp=tmp, info=info, single=dict(np.load(tmp / "single.npz")),
                p0=dict(np.load(tmp / "multi.p0.npz")), p1=dict(np.load(tmp / "multi.p1.npz")))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return _launch(tmp_path_factory.mktemp("multihost"))


def test_two_processes_see_four_devices(runs):
    info = runs["info"]
    assert info["single"] == dict(devices=4, local_devices=4, processes=1, computed=list(range(5)))
    for p in ("p0", "p1"):
        assert info[p] == dict(devices=4, local_devices=2, processes=2, computed=list(range(5)))


def test_maps_match_one_process(runs):
    ref = runs["single"]
    for p in ("p0", "p1"):                       # every process gets all maps
        for f in FIELDS:
            np.testing.assert_allclose(runs[p][f], ref[f], rtol=1e-5, atol=1e-7, err_msg=f"{p} {f}")
    stored = estimate.load_dataset_maps(runs["tmp"] / "store2")    # written by process 0 alone
    for f in FIELDS:
        np.testing.assert_array_equal(stored[f], runs["p0"][f])
    assert json.loads((runs["tmp"] / "store2" / "manifest.json").read_text())["complete"]


@pytest.mark.slow
def test_training_matches_one_process(tmp_path):
    """train() under jax.distributed (no change to the trainer: the batch is placed with
    make_array_from_callback, the state replicated). Slow: the train step compiles for ~15 s per process."""
    runs = _launch(tmp_path, "--train")
    ref = runs["single"]
    weights = [k for k in ref if k.startswith("w")]
    assert weights
    for p in ("p0", "p1"):
        np.testing.assert_allclose(runs[p]["losses"], ref["losses"], rtol=1e-5)
        for k in weights:
            np.testing.assert_allclose(runs[p][k], ref[k], rtol=1e-5, atol=1e-6, err_msg=f"{p} {k}")
    assert worker.TRAIN_STEPS == int(ref["losses"][-1, 0])
