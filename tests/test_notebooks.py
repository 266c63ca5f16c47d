"""The notebooks run top to bottom at small sizes, are stored without outputs, and match their generator.

Each notebook is executed with nbclient in a kernel running this interpreter (a kernelspec
written to a temporary JUPYTER_PATH, so nothing depends on kernels installed on the machine),
in a temporary working directory, with ``JAXDECOMP_NOTEBOOK_SMALL=1``.
"""

import json
import subprocess
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL = "jaxdecomp-test-python"
CELL_TIMEOUT = 600  # seconds per cell; small mode takes under two minutes per notebook


def test_notebooks_exist():
    names = {p.name for p in NOTEBOOKS}
    for name in ("01_quickstart.ipynb", "02_pixel_maps.ipynb", "03_gradients.ipynb", "04_compose_in_jax.ipynb"):
        assert name in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stripped(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: cell {cell.get('id')} has outputs (strip them)"
            assert cell.execution_count is None, f"{path.name}: cell {cell.get('id')} has an execution count"


def test_notebooks_match_generator(tmp_path):
    subprocess.run([sys.executable, str(NOTEBOOK_DIR / "build_notebooks.py"), str(tmp_path)], check=True,
                   capture_output=True, timeout=120)
    written = sorted(p.name for p in tmp_path.glob("*.ipynb"))
    assert written == [p.name for p in NOTEBOOKS], "notebooks/ and build_notebooks.py list different notebooks"
    for name in written:
        assert (tmp_path / name).read_text() == (NOTEBOOK_DIR / name).read_text(), (
            f"{name} differs from what notebooks/build_notebooks.py writes: edit the script and rerun it")


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """A kernelspec for this interpreter in a private JUPYTER_PATH; small sizes; a scratch cwd."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "jaxdecomp tests", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("JAXDECOMP_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    return work


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, kernel_env):
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=CELL_TIMEOUT, allow_errors=False,
                                     resources={"metadata": {"path": str(kernel_env)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors
