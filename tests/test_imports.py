"""Import hygiene: light imports stay light, subpackages are reachable lazily, and the
dependency rules of DESIGN.md hold in the source (checked with ``ast``, nothing imported).

Rules checked on the import graph of ``jaxdecomp/``, ``experiments/`` and ``notebooks/``:
only ``jaxdecomp/__main__.py`` imports ``jaxdecomp.cli``; experiments and notebooks use
public names only (no ``jaxdecomp.<pkg>._<name>``); ``jaxdecomp/_interfaces.py`` imports
nothing from the package; ``neurons`` and ``diffusion`` do not import ``estimate``;
``neurons`` does not import ``diffusion``; ``exact`` does not import ``diffusion``; the
module-level imports among jaxdecomp modules have no cycle.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "jaxdecomp"
HEAVY = ("orbax", "optax", "tqdm")


def _run(code: str) -> list:
    """Run ``code`` in a fresh interpreter (repository root on the path); return its JSON output."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


_LOADED = "[m for m in {heavy!r} if any(k == m or k.startswith(m + '.') for k in sys.modules)]"


@pytest.mark.heavy
def test_import_exact_does_not_load_the_training_stack():
    loaded = _run(f"import sys, json, jaxdecomp.exact; print(json.dumps({_LOADED.format(heavy=HEAVY)}))")
    assert loaded == [], f"import jaxdecomp.exact loaded {loaded}"


@pytest.mark.heavy
def test_import_neurons_and_data_do_not_load_the_training_stack():
    loaded = _run(
        "import sys, json, jaxdecomp.neurons, jaxdecomp.data; "
        f"print(json.dumps({_LOADED.format(heavy=HEAVY + ('matplotlib',))}))"
    )
    assert loaded == [], f"import jaxdecomp.neurons, jaxdecomp.data loaded {loaded}"


@pytest.mark.heavy
def test_subpackages_are_reachable_lazily_from_the_top_level():
    before, loaded, reachable, listed, heavy = _run(
        "import sys, json, jaxdecomp; "
        "before = sorted(k for k in sys.modules if k.startswith('jaxdecomp.')); "
        "ok = callable(jaxdecomp.data.digits) and callable(jaxdecomp.data.batches); "
        f"print(json.dumps([before, 'jaxdecomp.data' in sys.modules, ok, 'data' in jaxdecomp.__all__, "
        f"{_LOADED.format(heavy=HEAVY)}]))"
    )
    assert before == [], f"import jaxdecomp loaded {before} eagerly"
    assert loaded and reachable and listed
    assert heavy == [], f"jaxdecomp.data loaded {heavy}"


def test_unknown_attribute_and_result_types_at_top_level():
    import jaxdecomp

    with pytest.raises(AttributeError, match="no_such_thing"):
        jaxdecomp.no_such_thing  # noqa: B018
    if not (PKG / "_interfaces.py").exists():
        pytest.skip("jaxdecomp/_interfaces.py not written yet")
    from jaxdecomp import _interfaces

    for name in ("Encoder", "Estimate", "MapResult"):
        assert getattr(jaxdecomp, name) is getattr(_interfaces, name)
        assert name in jaxdecomp.__all__


# ----------------------------------------------------------------------------- import graph


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _sources(folder: str) -> list[Path]:
    base = ROOT / folder
    return sorted(p for p in base.rglob("*.py") if "__pycache__" not in p.parts) if base.exists() else []


def _is_type_checking(test) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool, top_level_only: bool):
    """Yield ``(imported dotted name, line)``: ``import a.b`` gives ``a.b``; ``from a import b``
    gives ``a.b`` (a submodule or a name in ``a``; resolved later). Relative imports are made
    absolute. ``top_level_only`` skips imports inside functions and ``if TYPE_CHECKING:``."""

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                if not top_level_only:
                    yield from visit(child, True)
                continue
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                if not top_level_only:
                    yield from visit(child, in_function)
                continue
            if isinstance(child, ast.Import):
                for a in child.names:
                    yield a.name, child.lineno
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    pkg = module.split(".") if is_package else module.split(".")[:-1]
                    pkg = pkg[: len(pkg) - (child.level - 1)]
                    base = ".".join(pkg + ([base] if base else []))
                for a in child.names:
                    yield (f"{base}.{a.name}" if a.name != "*" else base), child.lineno
            else:
                yield from visit(child, in_function)

    yield from visit(tree, False)


def _parse(path: Path):
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text()).get("cells", [])
        src = "\n".join(
            "\n".join(l for l in "".join(c.get("source", "")).splitlines() if not l.lstrip().startswith(("!", "%")))
            for c in cells
            if c.get("cell_type") == "code"
        )
    else:
        src = path.read_text()
    return ast.parse(src, filename=str(path))


def _graph(top_level_only: bool):
    """{module: [(imported jaxdecomp module, line)]} for every module under jaxdecomp/."""
    files = {_module_name(p): p for p in _sources("jaxdecomp")}

    def resolve(name):
        parts = name.split(".")
        for k in range(len(parts), 0, -1):
            cand = ".".join(parts[:k])
            if cand in files:
                return cand
        return None

    graph = {}
    for mod, path in files.items():
        edges = []
        for name, line in _imports(_parse(path), mod, path.name == "__init__.py", top_level_only):
            if name == "jaxdecomp" or name.startswith("jaxdecomp."):
                target = resolve(name)
                if target is not None and target != mod:
                    edges.append((target, line))
        graph[mod] = edges
    return graph, files


def _in(mod: str, pkg: str) -> bool:
    return mod == f"jaxdecomp.{pkg}" or mod.startswith(f"jaxdecomp.{pkg}.")


def test_only_main_imports_the_cli():
    offenders = []
    for folder in ("jaxdecomp", "experiments", "notebooks"):
        for path in _sources(folder) + sorted((ROOT / folder).glob("*.ipynb")):
            if path == PKG / "__main__.py":
                continue
            mod = _module_name(path) if path.suffix == ".py" else path.stem
            for name, line in _imports(_parse(path), mod, path.name == "__init__.py", False):
                if name == "jaxdecomp.cli" or name.startswith("jaxdecomp.cli."):
                    offenders.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not offenders, "\n".join(sorted(set(offenders)))


def test_experiments_and_notebooks_use_public_names_only():
    paths = _sources("experiments") + _sources("notebooks") + sorted((ROOT / "notebooks").glob("*.ipynb"))
    if not paths:
        pytest.skip("no experiments or notebooks")
    offenders = []
    for path in paths:
        mod = _module_name(path) if path.suffix == ".py" else path.stem
        for name, line in _imports(_parse(path), mod, path.name == "__init__.py", False):
            parts = name.split(".")
            if parts[0] == "jaxdecomp" and any(p.startswith("_") and not p.startswith("__") for p in parts[1:]):
                offenders.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not offenders, "\n".join(sorted(set(offenders)))


def test_interfaces_import_nothing_from_the_package():
    path = PKG / "_interfaces.py"
    if not path.exists():
        pytest.skip("jaxdecomp/_interfaces.py not written yet")
    names = [n for n, _ in _imports(_parse(path), "jaxdecomp._interfaces", False, False)]
    assert not [n for n in names if n == "jaxdecomp" or n.startswith("jaxdecomp.")], names


@pytest.mark.parametrize(
    "low, high",
    [("neurons", "estimate"), ("diffusion", "estimate"), ("neurons", "diffusion"), ("exact", "diffusion")],
)
def test_dependencies_flow_one_way(low, high):
    graph, _ = _graph(top_level_only=False)
    offenders = [
        f"{mod} (line {line}) imports {target}"
        for mod, edges in graph.items()
        if _in(mod, low)
        for target, line in edges
        if _in(target, high)
    ]
    assert not offenders, "\n".join(sorted(set(offenders)))


def _find_cycles(graph) -> list[list[str]]:
    """Cycles of a directed graph ``{node: [(target, line), ...]}`` found by depth-first search."""
    cycles, state, stack = [], {}, []

    def dfs(m):
        state[m] = 1
        stack.append(m)
        for t, _ in graph.get(m, []):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                dfs(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            dfs(m)
    return cycles


def test_find_cycles_finds_a_cycle():
    g = {"a": [("b", 1)], "b": [("c", 1)], "c": [("a", 1)], "d": [("a", 1)]}
    assert _find_cycles(g) == [["a", "b", "c", "a"]]
    assert _find_cycles({"a": [("b", 1)], "b": []}) == []


def test_no_import_cycles():
    graph, _ = _graph(top_level_only=True)
    cycles = _find_cycles(graph)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)
