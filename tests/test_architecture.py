"""The package's shape, enforced: layering of the stages, the doors of heavy dependencies,
and size limits of modules and functions (issue 8).

Imports are read from the source with ``ast`` (module level and inside functions alike), so
a lazy import inside a function counts as an arrow too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "nmc_deploy"

# Stages and shared layers, lowest first. A module may import its own subpackage and any
# package of a lower rank, never one of a higher rank (no arrow from a lower stage to a
# higher one). Packages of equal rank may not import each other.
RANKS = {
    "errors": 0, "fileio": 0, "frozen": 0,
    "console": 0.5,  # the CLI's result/diagnostic routing (nmc_deploy.console); fileio only
    "synapse_memory": 0.5,  # numpy only; re-exported by targets
    "checks": 0.5,  # the door checks: errors only (below every stage)
    "interrupts": 0,  # signal handling; imports nothing of ours
    "publish": 0.75,  # locks and atomic publication of outputs (standard library, checks)
    "ir": 1, "loihi": 1, "targets": 1, "data": 1,
    "program": 2, "nirio": 2,
    "models": 3,
    "prune": 4,
    "export": 5,
    "compile": 6,
    "simulate": 7,
    "report": 8, "builds": 8,
    "pipeline": 9,
    "api": 9.5,  # the Python API over the pipeline (nmc_deploy.api)
    "cli": 10,
}

# Heavy third-party dependencies and the only places that may import them.
DOORS = {
    "nir": ("nirio",),
    "nirtorch": ("nirio",),
    "lava": ("simulate/lava",),
    "torch": ("models", "prune", "export"),
    "h5py": ("nirio", "compile/netx.py"),
    "sklearn": ("data",),
    "neurobench": (),  # tests only: models/op_counts.py reproduces its definitions
}

MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 120
# Exceptions, each with the reason (also given in docs/architecture.md).
LONG_MODULES: dict[str, str] = {}
LONG_FUNCTIONS: dict[str, str] = {}


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def _imports(path: Path) -> set[str]:
    """Absolute dotted names imported by ``path`` (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    parts = ["nmc_deploy", *path.relative_to(PACKAGE).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
        package = parts
    else:
        package = parts[:-1]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:
                    names.update(f"{mod}.{a.name}" for a in node.names)
                else:
                    names.add(mod)
            else:
                names.add(node.module)
    return names


def _unit(dotted: str) -> str | None:
    """The rank unit of an nmc_deploy module name (first component below the package)."""
    parts = dotted.split(".")
    if parts[0] != "nmc_deploy" or len(parts) < 2:
        return None
    return parts[1]


def _owner(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("").parts
    return rel[0]


def test_every_unit_has_a_rank():
    units = {_owner(p) for p in _modules() if _owner(p) != "__init__"} - {"__main__"}
    assert units <= set(RANKS), f"unranked: {sorted(units - set(RANKS))}"


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_no_arrow_from_a_lower_stage_to_a_higher_one(path):
    me = _owner(path)
    if me in ("__init__", "__main__"):
        return
    bad = []
    for name in _imports(path):
        unit = _unit(name)
        if unit is None or unit == me or unit not in RANKS:
            continue
        if RANKS[unit] >= RANKS[me]:
            bad.append(f"{name} (rank {RANKS[unit]} >= {me}'s {RANKS[me]})")
    assert not bad, f"{_rel(path)} imports upward: {bad}"


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_heavy_dependencies_enter_at_their_doors(path):
    rel = _rel(path)
    bad = []
    for name in _imports(path):
        top = name.split(".")[0]
        if top in DOORS and not any(rel.startswith(d) for d in DOORS[top]):
            bad.append(name)
    assert not bad, f"{rel} imports {bad}; allowed only in {[DOORS[n.split('.')[0]] for n in bad]}"


def test_ir_loihi_program_are_numpy_only():
    allowed = {"numpy", "scipy", "__future__", "nmc_deploy"}
    for path in _modules():
        if _owner(path) not in ("ir", "loihi", "program"):
            continue
        import sys

        std = set(sys.stdlib_module_names)
        tops = {n.split(".")[0] for n in _imports(path)}
        assert tops <= allowed | std, f"{_rel(path)} imports {sorted(tops - allowed - std)}"


def _function_lengths(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_modules_and_functions_are_small(path):
    rel = _rel(path)
    lines = len(path.read_text().splitlines())
    if rel not in LONG_MODULES:
        assert lines <= MAX_MODULE_LINES, f"{rel}: {lines} lines > {MAX_MODULE_LINES}"
    long = [f"{name} (line {at}: {n} lines)" for name, at, n in _function_lengths(path)
            if n > MAX_FUNCTION_LINES and f"{rel}:{name}" not in LONG_FUNCTIONS]
    assert not long, f"{rel}: functions over {MAX_FUNCTION_LINES} lines: {long}"
