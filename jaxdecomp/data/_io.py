"""Loaders for stimulus files on disk: IDX (MNIST format) and NumPy ``.npz``."""

from __future__ import annotations

import gzip
import struct
import zipfile
import zlib

import numpy as np

from jaxdecomp._checks import check_file

_GZIP_MAGIC = b"\x1f\x8b"

# IDX type codes -> big-endian numpy dtypes
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_maybe_gzip(path: str) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == _GZIP_MAGIC or path.endswith(".gz"):
        try:
            return gzip.decompress(raw)
        except EOFError as err:
            raise ValueError(
                f"path: gzip stream is truncated (ended before its end-of-stream marker) "
                f"in {path!r}"
            ) from err
        except (OSError, zlib.error) as err:
            raise ValueError(f"path: not a valid gzip file: {path!r} ({err})") from err
    return raw


def load_mnist_idx(path) -> np.ndarray:
    """Read an IDX file (the MNIST format), raw or gzip-compressed.

    Gzip is detected by its magic bytes (``1f 8b``) or a ``.gz`` suffix. The IDX
    header is two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16,
    0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions, then one
    big-endian uint32 per dimension; the data follow, big-endian, row-major.

    Args:
      path: ``str`` or ``os.PathLike``, e.g. ``train-images-idx3-ubyte.gz``.

    Returns:
      numpy array in native byte order: MNIST images ``(N, 28, 28) uint8`` (0..255;
      use :func:`scale_to_unit` with ``lo=0, hi=255`` to map to [-1, 1]) or labels
      ``(N,) uint8``.

    Raises:
      FileNotFoundError: the file does not exist (message names the path).
      ValueError: bad magic number, unknown type code, or truncated / oversized
        file (message gives expected and actual byte counts and the path).
    """
    path = check_file(path)
    data = _read_maybe_gzip(path)
    if len(data) < 4:
        raise ValueError(
            f"path: IDX file is truncated: expected at least 4 header bytes, got "
            f"{len(data)} in {path!r}"
        )
    zero0, zero1, code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0 or code not in _IDX_DTYPES:
        raise ValueError(
            f"path: bad IDX magic number 0x{data[:4].hex()} in {path!r}: expected "
            f"0x0000TTDD with type code TT in "
            f"{{{', '.join(f'{c:02x}' for c in _IDX_DTYPES)}}} (e.g. 0x00000803 for "
            f"MNIST images, 0x00000801 for labels)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"path: IDX file is truncated: expected {header} header bytes for {ndim} "
            f"dimensions, got {len(data)} in {path!r}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _IDX_DTYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) < expected:
        raise ValueError(
            f"path: IDX file is truncated: expected {expected} bytes for shape {shape} "
            f"of {dtype.name}, got {len(data)} in {path!r}"
        )
    if len(data) > expected:
        raise ValueError(
            f"path: IDX file has trailing data: expected {expected} bytes for shape "
            f"{shape} of {dtype.name}, got {len(data)} in {path!r}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def load_npz(path, key: str = "x") -> np.ndarray:
    """Load one array from a NumPy ``.npz`` archive (pickles are refused).

    Args:
      path: ``str`` or ``os.PathLike`` of an ``.npz`` file (a plain ``.npy`` file is
        also accepted; its single array is returned and ``key`` is ignored).
      key: name of the array inside the archive.

    Returns:
      the stored numpy array, dtype and shape as saved.

    Raises:
      FileNotFoundError: the file does not exist (message names the path).
      ValueError: the file is not a readable npz/npy (names the path), or ``key``
        is not in it (lists the available keys).
    """
    path = check_file(path)
    if not isinstance(key, str):
        raise TypeError(f"key: expected a str, got {type(key).__name__}")
    # Open the file ourselves so it is closed even when numpy fails to parse it.
    with open(path, "rb") as fid:
        magic = fid.read(6)
        fid.seek(0)
        if not (magic.startswith(b"PK") or magic.startswith(b"\x93NUMPY")):
            raise ValueError(
                f"path: {path!r} is not a NumPy .npz/.npy file (it starts with {magic!r}, not a zip archive or "
                f"the .npy signature); write arrays with numpy.savez(path, x=images)"
            )
        try:
            loaded = np.load(fid, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
            raise ValueError(f"path: cannot read {path!r} as .npz/.npy: {err}") from err
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded:
            keys = sorted(loaded.files)
            if key not in keys:
                raise ValueError(f"key: {key!r} not found in {path!r}; available keys: {keys}")
            try:
                return loaded[key]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
                raise ValueError(
                    f"path: cannot read array {key!r} from {path!r}: {err}"
                ) from err
