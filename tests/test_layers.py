"""The floor plan (docs/DESIGN.md): a module never imports a layer above its own, and units never form a cycle.

Every import statement counts, at module top and inside functions alike (``if TYPE_CHECKING:`` blocks do not:
they never run). Layers, lowest first:

    L0 foundation    errors, _optional, _console, config, types, geometry, specs, blas (and the package root)
    L1 algorithms    preprocess, metrics, report, synthesis (the synthetic renderer)
    L2 platform      drivers | engines | the torch side (models, losses, data); assets
    L3 applications  runtime, training, evaluation, calibration
    L4 tools         bench (device speed), benchmark (accuracy matrix), doctor
    L5 CLI           cli, commands, __main__

Inside L2 the three groups stay apart, except that engines may use the torch side (a checkpoint becomes a network
to export or to run with the PyTorch backend).
"""
from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: distribution package -> folder (setup.py's package_dir)
PACKAGE_DIRS = {"edgepad": "edgepad", "edgepad.drivers": "drivers", "edgepad.engines": "engines",
                "edgepad.calibration": "calibration"}

#: unit (the first name below ``edgepad``; "" is the package root) -> layer
LAYERS: dict[str, int] = {
    "": 0, "errors": 0, "_optional": 0, "_console": 0, "config": 0, "types": 0, "geometry": 0, "specs": 0, "blas": 0,
    "preprocess": 1, "metrics": 1, "report": 1, "synthesis": 1,
    "drivers": 2, "engines": 2, "models": 2, "losses": 2, "data": 2, "assets": 2,
    "runtime": 3, "training": 3, "evaluation": 3, "calibration": 3,
    "bench": 4, "benchmark": 4, "doctor": 4,
    "cli": 5, "commands": 5, "__main__": 5,
}
#: L2 groups that must not import each other, and the exceptions
GROUPS = {"drivers": "drivers", "engines": "engines", "models": "torch", "losses": "torch", "data": "torch",
          "assets": "assets"}
ALLOWED_PEERS = {("engines", "torch")}


def discover(package_dirs: dict[str, Path]) -> dict[str, Path]:
    """``{module name: file}`` for every module of the distribution."""
    found: dict[str, Path] = {}
    for pkg, folder in package_dirs.items():
        for path in sorted(Path(folder).rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([pkg, *parts])
            if any(name.startswith(other + ".") or name == other for other in package_dirs if other != pkg
                   and other.startswith(pkg + ".")):
                continue  # a mapped subpackage's folder name inside the root (never on disk here)
            found[name] = path
    return found


def imported_names(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """``[(edgepad module, line)]`` for every in-project import of a module, nested imports included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_pkg = path.name == "__init__.py"
    out: list[tuple[str, int]] = []
    for node in _walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
        else:
            continue
        out.extend((t, node.lineno) for t in targets if t == "edgepad" or t.startswith("edgepad."))
    return out


def _walk(tree: ast.AST):
    """``ast.walk`` that skips ``if TYPE_CHECKING:`` bodies (annotations only, never executed)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def unit(module: str) -> str:
    """The unit of a module: its first name below ``edgepad``; every ``__main__`` entry point is CLI."""
    parts = module.split(".")
    if parts[-1] == "__main__":
        return "__main__"
    return parts[1] if len(parts) > 1 else ""


def check(package_dirs: dict[str, Path]) -> list[str]:
    """Every breach of the floor plan, as readable lines (empty when the tree is clean)."""
    modules = discover(package_dirs)
    problems: list[str] = []
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        src = unit(name)
        if src not in LAYERS:
            problems.append(f"{name}: unit {src!r} has no layer (add it to LAYERS and docs/DESIGN.md)")
            continue
        for target, line in imported_names(name, path, modules):
            dst = unit(target)
            if dst not in LAYERS:
                problems.append(f"{name}:{line} imports {target}: unit {dst!r} has no layer")
                continue
            if dst == src:
                continue
            edges.setdefault(src, set()).add(dst)
            where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{line}"
            if LAYERS[dst] > LAYERS[src]:
                problems.append(f"{where}: {name} (L{LAYERS[src]}) imports {target} (L{LAYERS[dst]}) — upward")
            elif LAYERS[dst] == LAYERS[src] == 2:
                a, b = GROUPS[src], GROUPS[dst]
                if a != b and (a, b) not in ALLOWED_PEERS:
                    problems.append(f"{where}: {name} imports {target} — L2 groups {a} and {b} stay apart")
    # cycles between units (same layer; upward edges are reported above)
    for a, b in itertools.permutations(edges, 2):
        if a < b and _reaches(edges, a, b) and _reaches(edges, b, a):
            problems.append(f"units {a!r} and {b!r} import each other (a cycle)")
    return problems


def _reaches(edges: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        cur = todo.pop()
        for nxt in edges.get(cur, ()):
            if nxt == goal:
                return True
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


def test_no_upward_imports_and_no_cycles():
    problems = check({pkg: ROOT / folder for pkg, folder in PACKAGE_DIRS.items()})
    assert problems == [], "\n".join(problems)


def test_every_unit_on_disk_has_a_layer():
    units = {unit(n) for n in discover({pkg: ROOT / f for pkg, f in PACKAGE_DIRS.items()})}
    assert units <= set(LAYERS), sorted(units - set(LAYERS))


def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return {"edgepad": tmp_path / "edgepad", "edgepad.drivers": tmp_path / "drivers",
            "edgepad.engines": tmp_path / "engines"}


@pytest.mark.parametrize("files, expect", [
    # an upward import hidden inside a function (preprocess -> drivers)
    ({"edgepad/preprocess.py": "def f():\n    from edgepad.drivers import registration\n",
      "drivers/registration.py": ""}, "upward"),
    # relative import reaching up (runtime -> cli)
    ({"edgepad/runtime/__init__.py": "", "edgepad/runtime/x.py": "from ..cli import main\n",
      "edgepad/cli.py": ""}, "upward"),
    # L2 groups apart (drivers -> engines)
    ({"drivers/a.py": "import edgepad.engines.manifest\n", "engines/manifest.py": ""}, "stay apart"),
    # a cycle inside one layer
    ({"edgepad/runtime/__init__.py": "import edgepad.evaluation\n",
      "edgepad/evaluation.py": "from edgepad import runtime\n"}, "cycle"),
    # an unknown unit
    ({"edgepad/newthing.py": "import edgepad.types\n", "edgepad/types.py": ""}, "no layer"),
])
def test_checker_catches_breaches(tmp_path, files, expect):
    problems = check(_tree(tmp_path, files))
    assert any(expect in p for p in problems), problems


def test_checker_accepts_downward_imports(tmp_path):
    files = {"edgepad/runtime/__init__.py": "from edgepad import preprocess\nimport edgepad.engines.manifest\n",
             "edgepad/preprocess.py": "from edgepad.types import Modality\n", "edgepad/types.py": "",
             "engines/manifest.py": "def f():\n    from edgepad.models import registry\n",
             "edgepad/models/__init__.py": "", "edgepad/models/registry.py": ""}
    assert check(_tree(tmp_path, files)) == []
