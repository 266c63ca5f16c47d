"""The pure training pieces: a user loop with ``make_train_step`` reproduces ``train``; a vmapped
step trains an ensemble exactly like separate runs; ``train_ensemble`` equals per-member
``train`` and resumes from its checkpoints; bad input names the argument."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdecomp.diffusion import (
    MLPDenoiser,
    TrainConfig,
    TrainState,
    batch_indices,
    ensemble_member,
    init_ensemble,
    init_train_state,
    log_snr_center,
    make_train_step,
    train,
    train_ensemble,
    trained_model,
)
from tests import _train_worker as worker

E = 4


def _leaves(tree):
    return [np.asarray(v) for v in jax.tree.leaves(tree)]


def _members(n=E):
    return [MLPDenoiser((3,), n_neurons=2, hidden=16, depth=1, emb_dim=8, n_fourier=4, rngs=nnx.Rngs(i))
            for i in range(n)]


def _max_rel(a, b):
    """max |a - b| / (max |b| + 1e-6) over the leaves of two pytrees."""
    return max(float(np.max(np.abs(u - v)) / (np.max(np.abs(v)) + 1e-6)) for u, v in zip(_leaves(a), _leaves(b)))


@pytest.mark.heavy
def test_user_loop_reproduces_train():
    """The loop in the module docstring gives train()'s weights and loss log bit for bit (same
    step function, same batches, same keys, one device: the same XLA program)."""
    x, r = worker.data()
    cfg = worker.config(12)
    key = jax.random.PRNGKey(cfg.seed)
    ref = train(worker.make_model(), x, r, cfg)

    model = worker.make_model()
    state = init_train_state(model, cfg, r=r)
    assert isinstance(state, TrainState) and int(state.step) == 0
    step = jax.jit(make_train_step(model, cfg, log_snr_loc=log_snr_center(x, cfg)))
    losses = []
    for s in range(cfg.steps):
        idx = batch_indices(key, s, len(x), cfg.batch_size)
        state, metrics = step(state, (x[idx], r[idx]), key)
        losses.append(float(metrics["loss"]))
    assert int(state.step) == cfg.steps == ref.step
    for got, want in ((trained_model(model, state), ref.model), (trained_model(model, state, ema=False),
                                                                 ref.raw_model)):
        for a, b in zip(_leaves(nnx.state(got)), _leaves(nnx.state(want))):
            np.testing.assert_array_equal(a, b)
    per_row = np.add.reduceat(np.asarray(losses, np.float64), [0, 5, 10]) / [5, 5, 2]    # log_every=5, 12 steps
    np.testing.assert_allclose(ref.losses, np.column_stack([[5, 10, 12], per_row]), rtol=1e-6)   # f32 sums
    # the input model is untouched and the EMA differs from the raw weights
    assert not np.array_equal(_leaves(state.ema_params)[0], _leaves(state.params)[0])
    for a, b in zip(_leaves(nnx.state(model)), _leaves(nnx.state(worker.make_model()))):
        np.testing.assert_array_equal(a, b)


@pytest.mark.heavy
def test_vmapped_step_equals_separate_runs():
    """jax.vmap of the step over 4 members (initial weights, keys, batches) equals 4 separate runs.

    Tolerance: max |difference| / max |value| < 1e-4 per leaf after 6 Adam steps. The two
    programs do the same arithmetic, but XLA lowers the vmapped matmuls to batched dot
    products whose float32 summation order may differ (~1e-7 relative per op), and Adam's
    g / sqrt(v) can enlarge such rounding where a gradient is tiny (observed 4e-7..3e-6 on
    CPU). The members differ from one another by ~2 on the same scale (asserted > 1e-2), so
    a vmap that shared keys, batches or weights across members fails by orders of magnitude.
    """
    x, r = worker.data()
    cfg = TrainConfig(steps=6, batch_size=16, learning_rate=1e-2, warmup_steps=1, cond_drop=0.3, progress=False)
    models = _members()
    keys = jax.random.split(jax.random.PRNGKey(5), E)
    loc = log_snr_center(x, cfg)
    step = make_train_step(models[0], cfg, log_snr_loc=loc)

    ens = init_ensemble(models, cfg, r=r)
    assert ens.step.shape == (E,)
    vstep = jax.jit(jax.vmap(step))
    singles = [init_train_state(m, cfg, r=r) for m in models]
    jstep = jax.jit(step)
    for s in range(cfg.steps):
        idx = np.stack([batch_indices(k, s, len(x), cfg.batch_size) for k in keys])
        ens, m_ens = vstep(ens, (jnp.asarray(x[idx]), jnp.asarray(r[idx])), keys)
        losses = []
        for i in range(E):
            singles[i], m = jstep(singles[i], (x[idx[i]], r[idx[i]]), keys[i])
            losses.append(m["loss"])
        np.testing.assert_allclose(m_ens["loss"], losses, rtol=1e-4)

    for i in range(E):
        got = ensemble_member(ens, i)
        assert int(got.step) == cfg.steps
        assert _max_rel(got.params, singles[i].params) < 1e-4, (i, _max_rel(got.params, singles[i].params))
        assert _max_rel(got.ema_params, singles[i].ema_params) < 1e-4
        assert _max_rel(got.opt_state, singles[i].opt_state) < 1e-4
    spread = min(_max_rel(singles[i].params, singles[0].params) for i in range(1, E))
    assert spread > 1e-2, spread


@pytest.mark.heavy
def test_train_ensemble_matches_train_and_resumes(tmp_path):
    """train_ensemble(models, keys) == [train(models[i], key=keys[i])] (tolerance as above) and,
    with checkpoints, a run resumed after losing its last checkpoint repeats itself exactly."""
    x, r = worker.data()
    cfg = worker.config(10)
    models = _members(2)
    keys = [jax.random.PRNGKey(21), jax.random.PRNGKey(22)]
    ck = tmp_path / "ck"
    ens = train_ensemble(models, x, r, cfg, keys=keys, checkpoint_dir=ck)
    assert len(ens) == 2
    log = np.loadtxt(ck / "loss_log.csv", delimiter=",", skiprows=1)
    assert log.shape == (2, 3)
    for i, res in enumerate(ens):
        ref = train(models[i], x, r, cfg, key=keys[i])
        assert res.step == 10 and res.resumed_from is None
        np.testing.assert_array_equal(res.losses[:, 0], ref.losses[:, 0])
        np.testing.assert_allclose(res.losses[:, 1], ref.losses[:, 1], rtol=1e-4)
        np.testing.assert_allclose(log[:, 1 + i], ref.losses[:, 1], rtol=1e-4)
        assert _max_rel(nnx.state(res.model), nnx.state(ref.model)) < 1e-4
        assert _max_rel(nnx.state(res.raw_model), nnx.state(ref.raw_model)) < 1e-4
        np.testing.assert_allclose(res.model.r_shift[...], r.mean(0), rtol=1e-5)
    assert _max_rel(nnx.state(ens[1].model), nnx.state(ens[0].model)) > 1e-2

    shutil.rmtree(ck / "10")
    again = train_ensemble(models, x, r, cfg, keys=keys, checkpoint_dir=ck)
    assert all(res.resumed_from == 5 and res.step == 10 for res in again)
    for a, b in zip(again, ens):
        np.testing.assert_array_equal(a.losses, b.losses)
        for u, v in zip(_leaves(nnx.state(a.model)), _leaves(nnx.state(b.model))):
            np.testing.assert_array_equal(u, v)


def test_bad_input_names_the_argument():
    x, r = worker.data()
    cfg = TrainConfig(steps=2, batch_size=8, progress=False)
    model = _members(1)[0]
    with pytest.raises(ValueError, match=r"log_snr_loc: .*log_snr_center"):
        make_train_step(model, cfg)
    with pytest.raises(ValueError, match="log_snr_loc"):
        make_train_step(model, cfg, log_snr_loc=float("nan"))
    with pytest.raises(TypeError, match="model"):
        make_train_step(object(), cfg, log_snr_loc=0.0)
    with pytest.raises(TypeError, match="config"):
        make_train_step(model, {"steps": 1}, log_snr_loc=0.0)
    with pytest.raises(ValueError, match=r"r: expected shape"):
        init_train_state(model, cfg, r=r[:, :1])
    other = MLPDenoiser((3,), n_neurons=2, hidden=8, depth=1, emb_dim=8, n_fourier=4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"models\[1\]: expected the same architecture"):
        init_ensemble([model, other], cfg)
    with pytest.raises(ValueError, match="models: expected at least one"):
        init_ensemble([], cfg)
    with pytest.raises(ValueError, match=r"keys: expected one key per model \(2\), got 1"):
        train_ensemble(_members(2), x, r, cfg, keys=[jax.random.PRNGKey(0)])
    with pytest.raises(ValueError, match=r"x: expected shape"):
        train_ensemble(_members(2), x[:, :2], r, cfg)
    with pytest.raises(ValueError, match="batch_size"):
        batch_indices(jax.random.PRNGKey(0), 0, 10, 0)
