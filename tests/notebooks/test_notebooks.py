"""The notebooks match their jupytext sources, are stored without outputs, and run top to bottom at small sizes.

The source of each notebook is the jupytext percent-format script ``notebooks/NN_name.py``; the
committed ``.ipynb`` (for Colab) is generated from it with
``jupytext --to ipynb --update notebooks/[0-9][0-9]_*.py``. Each notebook is executed with nbclient
in a kernel running this interpreter (a kernelspec written to a temporary JUPYTER_PATH, so nothing
depends on kernels installed on the machine), in a temporary working directory, with
``JAXDECOMP_NOTEBOOK_SMALL=1``.
"""

import json
import re
import sys
from pathlib import Path

import jupytext
import nbclient
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
SOURCES = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
KERNEL = "jaxdecomp-test-python"
CELL_TIMEOUT = 600  # seconds per cell; small mode takes under two minutes per notebook
REGENERATE = "jupytext --to ipynb --update notebooks/[0-9][0-9]_*.py"
# a private module (jaxdecomp._x, jaxdecomp.x._y) or the command-line module
PRIVATE_IMPORT = re.compile(r"\bjaxdecomp(\.\w+)*\._\w+|\bjaxdecomp\.cli\b"
                            r"|from\s+jaxdecomp(\.\w+)*\s+import\s+\(?\s*(_\w+|cli\b)")


def test_notebooks_exist():
    names = {p.name for p in NOTEBOOKS}
    for name in ("01_quickstart", "02_pixel_maps", "03_gradients", "04_compose_in_jax"):
        assert f"{name}.ipynb" in names
        assert (NOTEBOOK_DIR / f"{name}.py").is_file()
    assert [p.stem for p in SOURCES] == [p.stem for p in NOTEBOOKS], (
        f"every notebooks/NN_name.py needs its .ipynb and vice versa: {REGENERATE}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stripped(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: cell {cell.get('id')} has outputs (strip them)"
            assert cell.execution_count is None, f"{path.name}: cell {cell.get('id')} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_matches_source(path):
    source = path.with_suffix(".py")
    assert source.is_file(), f"{path.name} has no jupytext source {source.name}"
    text = jupytext.read(source)
    assert text.metadata["jupytext"]["text_representation"]["format_name"] == "percent", source.name
    nb = nbformat.read(path, as_version=4)
    want = [(c.cell_type, c.source) for c in text.cells]
    got = [(c.cell_type, c.source) for c in nb.cells]
    assert len(got) == len(want), f"{path.name} has {len(got)} cells, {source.name} {len(want)}: {REGENERATE}"
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"{path.name} cell {i} differs from {source.name} (edit the .py, then {REGENERATE})"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_notebook_uses_public_api(path):
    code = "\n".join(c.source for c in jupytext.read(path).cells if c.cell_type == "code")
    bad = [m.group(0) for m in PRIVATE_IMPORT.finditer(code)]
    assert not bad, f"{path.name} uses private modules or jaxdecomp.cli: {bad}"


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


@pytest.mark.heavy
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, kernel_env):
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=CELL_TIMEOUT, allow_errors=False,
                                     resources={"metadata": {"path": str(kernel_env)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors
