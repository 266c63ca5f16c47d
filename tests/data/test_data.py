"""Tests for jaxdecomp.data: offline stimulus sets, loaders, scaling, batching."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdecomp import data

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _assert_unit_images(x, shape):
    x = np.asarray(x)
    assert x.shape == shape
    assert x.dtype == np.float32
    assert np.all(np.isfinite(x))
    assert x.min() >= -1.0 and x.max() <= 1.0


def _radial_power_slope(images: np.ndarray) -> float:
    """Slope of log radially-averaged power vs log frequency, k = 1 .. size/2 cycles/image."""
    img = np.asarray(images, np.float64)
    n = img.shape[-1]
    img = img - img.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fft2(img)) ** 2).mean(axis=0)
    f = np.fft.fftfreq(n) * n
    k = np.rint(np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)).astype(int)
    ks = np.arange(1, n // 2 + 1)
    radial = np.array([power[k == kk].mean() for kk in ks])
    return float(np.polyfit(np.log(ks), np.log(radial), 1)[0])


# ----------------------------------------------------------------------------- digits


@pytest.mark.parametrize("size", [8, 16, 32])
def test_digits_shape_range(size):
    x, y = data.digits(size, return_labels=True)
    _assert_unit_images(x, (1797, size, size))
    assert y.shape == (1797,) and np.issubdtype(y.dtype, np.integer)
    assert set(np.unique(y)) == set(range(10))
    # background -1 and full ink +1 both occur
    assert x.min() == -1.0 and x.max() == 1.0


@pytest.mark.parametrize("size", [16, 64])
def test_digits_resized_back_match_originals(size):
    orig = data.digits(8)
    big = data.digits(size)
    f = size // 8
    back = big.reshape(-1, 8, f, 8, f).mean(axis=(2, 4))  # block average back to 8x8
    corr = np.corrcoef(back.ravel(), orig.ravel())[0, 1]
    assert corr > 0.95


def test_digits_bad_size():
    with pytest.raises(ValueError, match="size"):
        data.digits(4)
    with pytest.raises(TypeError, match="size"):
        data.digits(16.0)


# ----------------------------------------------------------------------------- natural patches


def test_natural_patches_shape_determinism_contrast():
    a = data.natural_patches(20, 32, seed=3)
    _assert_unit_images(a, (20, 32, 32))
    np.testing.assert_array_equal(a, data.natural_patches(20, 32, seed=3))
    b = data.natural_patches(20, 32, seed=4)
    assert not np.array_equal(a, b)
    assert a.std() > 0.1
    # global (not per-patch) mapping: patches differ in mean and contrast
    assert np.ptp(a.mean(axis=(1, 2))) > 0.1


def test_natural_patches_scale_block_average():
    x = data.natural_patches(8, 64, seed=0, scale=4)
    _assert_unit_images(x, (8, 64, 64))
    with pytest.raises(ValueError, match="size"):
        data.natural_patches(2, 200, scale=4)  # 427 // 4 = 106 < 200
    with pytest.raises(ValueError, match="scale"):
        data.natural_patches(2, 8, scale=0)


# ----------------------------------------------------------------------------- dead leaves


def test_dead_leaves_shape_determinism_piecewise_constant(key):
    x = data.dead_leaves(key, 8, 32)
    _assert_unit_images(x, (8, 32, 32))
    np.testing.assert_array_equal(np.asarray(x), np.asarray(data.dead_leaves(key, 8, 32)))
    other = data.dead_leaves(jax.random.PRNGKey(1), 8, 32)
    assert not np.array_equal(np.asarray(x), np.asarray(other))
    x = np.asarray(x)
    same_h = x[:, :, 1:] == x[:, :, :-1]
    assert same_h.mean() > 0.5  # piecewise constant: most pixels equal their neighbour
    # but not flat: each image has several grey levels
    assert min(len(np.unique(img)) for img in x) >= 3
    # typed keys work too
    _assert_unit_images(data.dead_leaves(jax.random.key(0), 2, 16), (2, 16, 16))


def test_dead_leaves_power_spectrum_power_law(key):
    x = np.asarray(data.dead_leaves(key, 64, 64))
    slope = _radial_power_slope(x)
    assert -4.0 < slope < -1.5, slope
    # the statistic can fail: white noise is flat
    noise = np.random.default_rng(0).uniform(-1, 1, x.shape)
    assert _radial_power_slope(noise) > -0.5


def test_dead_leaves_supersample(key):
    x = np.asarray(data.dead_leaves(key, 4, 16, supersample=2))
    _assert_unit_images(x, (4, 16, 16))


def test_dead_leaves_bad_args(key):
    with pytest.raises(ValueError, match="r_min"):
        data.dead_leaves(key, 2, 8, r_min=0.5, r_max=0.1)
    with pytest.raises(ValueError, match="n_discs"):
        data.dead_leaves(key, 2, 8, n_discs=0)
    with pytest.raises(TypeError, match="key"):
        data.dead_leaves(0, 2, 8)


# ----------------------------------------------------------------------------- IDX


def _idx_bytes(arr: np.ndarray) -> bytes:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}
    header = struct.pack(">BBBB", 0, 0, codes[arr.dtype], arr.ndim)
    header += struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(5,), dtype=np.uint8)
    floats = rng.normal(size=(3, 4)).astype(np.float32)
    for name, arr in [("imgs-idx3-ubyte", images), ("lbl-idx1-ubyte", labels), ("f.idx", floats)]:
        blob = _idx_bytes(arr)
        path = tmp_path / name
        if compress:
            blob = gzip.compress(blob)
            path = tmp_path / (name + ".gz")
        path.write_bytes(blob)
        out = data.load_mnist_idx(path)
        assert out.shape == arr.shape and out.dtype == arr.dtype
        np.testing.assert_array_equal(out, arr)
    # gzip detected by magic bytes even without the .gz suffix
    if compress:
        p = tmp_path / "nosuffix"
        p.write_bytes(gzip.compress(_idx_bytes(labels)))
        np.testing.assert_array_equal(data.load_mnist_idx(str(p)), labels)


def test_idx_truncated(tmp_path):
    blob = _idx_bytes(np.zeros((4, 28, 28), np.uint8))
    path = tmp_path / "short-idx3-ubyte"
    path.write_bytes(blob[:-100])
    with pytest.raises(ValueError, match="truncated") as err:
        data.load_mnist_idx(path)
    assert str(path) in str(err.value)
    assert str(len(blob)) in str(err.value) and str(len(blob) - 100) in str(err.value)
    # truncated gzip stream
    gz = tmp_path / "short.gz"
    gz.write_bytes(gzip.compress(blob)[:-20])
    with pytest.raises(ValueError, match="truncated") as err:
        data.load_mnist_idx(gz)
    assert str(gz) in str(err.value)


def test_idx_bad_magic_and_missing(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 16)
    with pytest.raises(ValueError, match="magic") as err:
        data.load_mnist_idx(path)
    assert str(path) in str(err.value)
    missing = tmp_path / "nope-idx3-ubyte"
    with pytest.raises(FileNotFoundError, match="nope-idx3-ubyte"):
        data.load_mnist_idx(missing)


# ----------------------------------------------------------------------------- npz


def test_npz(tmp_path):
    path = tmp_path / "stim.npz"
    x = np.arange(12.0).reshape(3, 4)
    np.savez(path, x=x, labels=np.arange(3))
    np.testing.assert_array_equal(data.load_npz(path), x)
    np.testing.assert_array_equal(data.load_npz(path, "labels"), np.arange(3))
    with pytest.raises(ValueError, match=r"'images'.*\['labels', 'x'\]"):
        data.load_npz(path, "images")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        data.load_npz(tmp_path / "missing.npz")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="corrupt.npz"):
        data.load_npz(corrupt)


# ----------------------------------------------------------------------------- scale_to_unit


def test_scale_to_unit():
    x = np.array([[0, 128, 255]], dtype=np.uint8)
    y = data.scale_to_unit(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [[-1.0, 128 / 255 * 2 - 1, 1.0]], rtol=1e-6)
    # explicit range, values outside are clipped
    np.testing.assert_allclose(data.scale_to_unit(np.array([-5.0, 5.0, 15.0]), 0, 10), [-1, 0, 1])
    with pytest.raises(ValueError, match="constant"):
        data.scale_to_unit(np.full((3, 3), 7.0))
    with pytest.raises(ValueError, match="x"):
        data.scale_to_unit(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="lo"):
        data.scale_to_unit(np.array([0.0, 1.0]), lo=2.0, hi=1.0)


# ----------------------------------------------------------------------------- check_images


def test_check_images():
    x = np.zeros((2, 8, 8), np.float64)
    out = data.check_images(x, shape=(8, 8))
    assert out.dtype == np.float32 and out.shape == (2, 8, 8)
    jout = data.check_images(jnp.zeros((2, 4, 4)))
    assert isinstance(jout, jax.Array) and jout.dtype == jnp.float32
    with pytest.raises(ValueError, match=r"stim.*\(N, 16, 16\).*\(2, 8, 8\)"):
        data.check_images(x, shape=(16, 16), name="stim")
    with pytest.raises(ValueError, match=r"stim.*\[-1, 1\]"):
        data.check_images(x + 1.5, name="stim")
    bad = x.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="stim.*NaN"):
        data.check_images(bad, name="stim")
    with pytest.raises(TypeError, match="stim.*dtype"):
        data.check_images(np.zeros((2, 8, 8), np.uint8), name="stim")
    with pytest.raises(ValueError, match="stim.*shape"):
        data.check_images(np.zeros((8, 8)), name="stim")
    # within tolerance is accepted
    data.check_images(np.full((1, 2, 2), 1.0005))
    # under jit only static checks run
    jax.jit(lambda a: data.check_images(a, shape=(4, 4)))(jnp.zeros((3, 4, 4)))


# ----------------------------------------------------------------------------- batches


def test_batches_epoch_coverage_and_determinism(key):
    n = 23
    x = np.arange(n, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    r = np.arange(n) * 10
    got = list(data.batches(key, x, r, batch_size=5, shard=False, drop_remainder=False))
    assert [b[0].shape[0] for b in got] == [5, 5, 5, 5, 3]
    xs = np.concatenate([np.asarray(b[0])[:, 0] for b in got])
    rs = np.concatenate([np.asarray(b[1]) for b in got])
    assert sorted(xs.astype(int)) == list(range(n))  # every example exactly once
    np.testing.assert_array_equal(rs, xs * 10)  # x and r stay paired
    assert not np.array_equal(xs, np.arange(n))  # permuted
    kw = dict(batch_size=5, shard=False, drop_remainder=False)
    again = np.concatenate([np.asarray(b[0])[:, 0] for b in data.batches(key, x, r, **kw)])
    np.testing.assert_array_equal(xs, again)
    other_key = jax.random.PRNGKey(7)
    other = np.concatenate([np.asarray(b)[:, 0] for b in data.batches(other_key, x, **kw)])
    assert not np.array_equal(xs, other)
    # drop_remainder: 4 equal batches of distinct examples; sharded on 1 device
    dropped = list(data.batches(key, jnp.asarray(x), batch_size=5))
    assert len(dropped) == 4 and all(b.shape == (5, 3) for b in dropped)
    assert len(np.unique(np.concatenate([np.asarray(b)[:, 0] for b in dropped]))) == 20


def test_batches_errors(key):
    x = np.zeros((10, 2))
    with pytest.raises(ValueError, match=r"x, r.*10.*9"):
        data.batches(key, x, np.zeros(9), batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        data.batches(key, x, batch_size=11)
    with pytest.raises(TypeError, match="batch_size"):
        data.batches(key, x, batch_size=2.0)


_SHARD_CODE = textwrap.dedent(
    """
    import jax, numpy as np
    from jaxdecomp import data
    assert jax.device_count() == 4, jax.device_count()
    x = np.arange(16 * 3, dtype=np.float32).reshape(16, 3)
    seen = []
    for xb, rb in data.batches(jax.random.PRNGKey(0), x, np.arange(16), batch_size=8):
        assert xb.shape == (8, 3)
        assert len(xb.sharding.device_set) == 4 and len(rb.sharding.device_set) == 4
        assert {s.data.shape for s in xb.addressable_shards} == {(2, 3)}
        seen.extend(np.asarray(rb).tolist())
    assert sorted(seen) == list(range(16))
    try:
        data.batches(jax.random.PRNGKey(0), x, batch_size=6)
    except ValueError as err:
        assert "batch_size" in str(err) and "4" in str(err), err
    else:
        raise AssertionError("batch_size=6 on 4 devices should fail")
    print("SHARD_OK")
    """
)


def test_batches_sharded_over_four_devices():
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", _SHARD_CODE], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SHARD_OK" in proc.stdout
