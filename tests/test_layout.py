"""The package's import layering (docs/layout.md): each module imports only modules below it,
and no import inside a function hides a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "ascend_safe"

#: Bottom to top; a module imports (at run time) only modules listed before it. Mirrors
#: docs/layout.md. ``sim`` is its own package under everything; ``conformance`` counts as one.
LAYERS = [
    "sim",
    "errors",
    "constants",
    "_interrupts",
    "_process",
    "_validate",
    "_scope",  # the device sessions open in each thread (current_device())
    "_null",  # the null backend for benchmarks (built from the simulator's table)
    "_backend",  # the one pyacl boundary
    "_lifetime",  # the lifetime core
    "_inflight",  # streams with work in flight (for the fork guard, contexts, exit)
    "_runtime",  # acl.init, the exit teardown and the release before a suspend
    "_logind",
    "slots",
    "admission",
    "_staging",  # the copy engine: pinned staging buffers ...
    "_copy",  # ... and endpoints, bounds, async keep-alive (imports no resource)
    "context",  # the bases every resource builds on (ContextOwner, InContext)
    "stream",
    "event",
    "memory",
    "buffer",
    "handles",
    "model",
    "device",  # the facade: Device and Context, which create the resources
    "pool",
    "fork",
    "workers",
    "suspend",
    "doctor",
    "_model_demo",
    "conformance",
    "pytest_plugin",
    "__init__",
    "cli",
    "__main__",
]

#: Modules that load lower modules inside functions on purpose (entry points, and the backend
#: choosing the simulator only when it is used): allowed only downwards, so never a cycle.
LAZY_LOADERS = {"_backend", "cli", "doctor", "pytest_plugin"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _package_modules() -> list[Path]:
    return [p for p in ROOT.rglob("*.py") if p.relative_to(ROOT).parts[0] != "sim"]


def _targets(node: ast.AST, importer: Path) -> list[str]:
    """Package modules (by layer name) *node* imports."""
    depth = len(importer.relative_to(ROOT).parts) - 1  # 0 at the top level
    out: list[str] = []
    if isinstance(node, ast.Import):
        for alias in node.names:
            parts = alias.name.split(".")
            if parts[0] == "ascend_safe":
                out.append(parts[1] if len(parts) > 1 else "__init__")
    elif isinstance(node, ast.ImportFrom):
        if node.level == 0:
            parts = (node.module or "").split(".")
            if parts[0] == "ascend_safe":
                out.append(parts[1] if len(parts) > 1 else "__init__")
        elif node.level - 1 == depth:  # relative to the package root
            if node.module:
                out.append(node.module.split(".")[0])
            else:
                out.extend(alias.name for alias in node.names)
        # deeper relative imports stay inside a subpackage
    return [t for t in out if t != "__version__"]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(module-level run-time imports, imports inside functions) of *path*, with lines.

    Imports under ``if TYPE_CHECKING:`` are for annotations only and never run."""
    tree = ast.parse(path.read_text(), str(path))
    top: list[tuple[int, str]] = []
    inner: list[tuple[int, str]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub, in_function)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                names = [(child.lineno, t) for t in _targets(child, path)]
                (inner if in_function else top).extend(names)
                continue
            visit(
                child,
                in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)),
            )

    visit(tree, False)
    return top, inner


def test_every_module_has_a_layer() -> None:
    names = {_module_name(p) for p in _package_modules()} | {"sim"}
    missing = sorted(names - set(LAYERS))
    assert missing == [], f"add {missing} to LAYERS here and to docs/layout.md"


@pytest.mark.parametrize("path", _package_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_import_only_what_is_below_them(path: Path) -> None:
    importer = _module_name(path)
    rank = LAYERS.index(importer)
    top, inner = _imports(path)
    upward = [(line, t) for line, t in top if t != importer and LAYERS.index(t) >= rank]
    assert upward == [], f"{path.name} imports modules at or above its layer: {upward}"
    if importer in LAZY_LOADERS:
        hidden = [(line, t) for line, t in inner if t != importer and LAYERS.index(t) >= rank]
    else:
        hidden = [(line, t) for line, t in inner if t != importer]
    assert hidden == [], (
        f"{path.name} imports package modules inside functions: {hidden}; import them at the "
        "top (only from lower layers)"
    )


def test_the_simulator_imports_nothing_of_the_wrapper() -> None:
    sim_root = ROOT / "sim"
    for path in sim_root.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level > len(
                path.relative_to(sim_root).parts
            ):
                pytest.fail(f"{path} imports from the wrapper: line {node.lineno}")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                assert not any(
                    m.startswith("ascend_safe") and not m.startswith("ascend_safe.sim")
                    for m in mods
                ), f"{path} line {node.lineno}"
