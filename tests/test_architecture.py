"""crib's layers (docs/ARCHITECTURE.md), checked from the imports themselves.

Every import in crib/ (module level or not) is read with `ast`. A package may
import its own layer or the layers below, never above; the packages' import
graph has no cycle; the domain and infrastructure know nothing of gRPC; and
no module outside the generated code passes 800 lines (in crib/, tests/,
e2e/, bench/ or scripts/).
"""

from __future__ import annotations

import ast
from pathlib import Path

CRIB = Path(__file__).resolve().parents[1] / "crib"
GENERATED = ("_pb2.py", "_pb2_grpc.py")

# Top to bottom. A package is crib's first-level package or module.
LAYERS = {
    "entry": {"cri_server", "cribctl", "streaming"},
    "domain": {"sandbox", "container", "image_service", "cni"},
    "infrastructure": {
        "runtime",
        "store",
        "background",
        "config",
        "errors",
        "failpoints",
        "first_use",
        "log_setup",
        "node_metrics",
        "shared_task",
        "spawn",
        "tracing",
        "__init__",
    },
    "contract": {"proto"},
}
ORDER = list(LAYERS)
MAX_LINES = 800


def _package(module: str) -> str:
    """crib.X...: X when it is a package or module of crib, else crib's own __init__ (a name in it)."""
    parts = module.split(".")
    if len(parts) > 1 and ((CRIB / parts[1]).is_dir() or (CRIB / f"{parts[1]}.py").exists()):
        return parts[1]
    return "__init__"


def _layer(package: str) -> int:
    for i, name in enumerate(ORDER):
        if package in LAYERS[name]:
            return i
    raise AssertionError(f"crib.{package} is in no layer: add it to LAYERS and docs/ARCHITECTURE.md")


def _modules() -> dict[str, Path]:
    out = {}
    for path in CRIB.rglob("*.py"):
        if path.name.endswith(GENERATED):
            continue
        rel = path.relative_to(CRIB.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        out[name] = path
    return out


def _imports(path: Path, module: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            # crib imports absolutely; a relative import would slip past this check.
            assert node.level == 0, f"{module}: relative import of {node.module!r}"
            target = node.module or ""
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names}
    return {m for m in found if m == "crib" or m.startswith("crib.") or m == "grpc" or m.startswith("grpc.")}


def _graph() -> dict[str, set[str]]:
    return {name: _imports(path, name) for name, path in _modules().items()}


def test_every_import_goes_down_or_sideways() -> None:
    wrong = []
    for module, imports in _graph().items():
        here = _layer(_package(module))
        for target in imports:
            if not target.startswith("crib."):
                continue
            there = _layer(_package(target))
            if there < here:
                wrong.append(f"{module} ({ORDER[here]}) imports {target} ({ORDER[there]})")
    assert not wrong, "imports that go up a layer:\n" + "\n".join(sorted(wrong))


def test_packages_import_each_other_in_one_direction_only() -> None:
    edges: dict[str, set[str]] = {}
    for module, imports in _graph().items():
        src = _package(module)
        for target in imports:
            if target.startswith("crib.") and _package(target) != src:
                edges.setdefault(src, set()).add(_package(target))

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in edges.get(node, ()):
                if nxt == start:
                    return [*path, start]
                if nxt not in path:
                    stack.append((nxt, [*path, nxt]))
        return None

    cycles = {" -> ".join(c) for p in edges if (c := cycle_from(p))}
    assert not cycles, "package cycles:\n" + "\n".join(sorted(cycles))


def test_modules_within_a_package_have_no_cycle() -> None:
    graph = _graph()
    internal = {
        m: {t for t in imports if t in graph and t != m and _package(t) == _package(m)}
        for m, imports in graph.items()
    }
    seen: set[str] = set()
    done: set[str] = set()
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        seen.add(node)
        for nxt in internal[node]:
            if nxt in path:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in done:
                visit(nxt, [*path, nxt])
        done.add(node)

    for module in sorted(internal):
        if module not in seen:
            visit(module, [module])
    assert not cycles, "module cycles:\n" + "\n".join(sorted(set(cycles)))


def test_the_domain_and_infrastructure_know_nothing_of_grpc() -> None:
    middle = {ORDER.index("domain"), ORDER.index("infrastructure")}
    wrong = [
        f"{module} imports {target}"
        for module, imports in _graph().items()
        if _layer(_package(module)) in middle
        for target in imports
        if target == "grpc" or target.startswith("grpc.")
    ]
    assert not wrong, "\n".join(sorted(wrong))


def test_no_module_passes_800_lines() -> None:
    # The tests and benchmarks are held to the same size as crib itself.
    root = CRIB.parent
    paths = [*_modules().values()]
    for folder in ("tests", "e2e", "bench", "scripts"):
        paths += (root / folder).rglob("*.py")
    long = [
        f"{path.relative_to(root)}: {n} lines"
        for path in paths
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    ]
    assert len(paths) > 100 and not long, "\n".join(long)


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The test itself: an import from the domain up into the CRI server is caught."""
    path = tmp_path / "bad.py"
    path.write_text("from crib.cri_server.rpc import generic_handler\n")
    imports = _imports(path, "crib.sandbox.bad")
    assert "crib.cri_server.rpc" in imports
    assert _layer(_package("crib.cri_server.rpc")) < _layer(_package("crib.sandbox.bad"))
