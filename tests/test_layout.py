"""The import direction of ARCHITECTURE.md's layout, checked over the source's own `import`
statements (every one, also those inside functions and `if TYPE_CHECKING:` blocks).

    core (errors, settings, logging, metrics, security, http_errors, asgi, paths)
      -> engines/, storage/, db/, queue/, wire/   each imports core and itself only
      -> api/                                 the worker's HTTP surfaces
      -> worker/                              composition: app, CLI, lifecycle
    gateway/ on its own floor: core, db/, storage/, queue/, wire/; never api/, worker/, engines/
    serve.py, console/, bench/, cli.py on top.

Wire-format modules (`protocol.py`) import neither torch nor SQLAlchemy nor FastAPI.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "pureinfer"

CORE = {"errors", "settings", "logging", "metrics", "security", "http_errors", "asgi", "paths", "disconnect",
        "jsonline", "__init__"}
FOUNDATION = {"engines", "storage", "db", "queue", "wire"}
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    **{part: {"core", part} for part in FOUNDATION},
    "api": {"core", *FOUNDATION, "api"},
    "worker": {"core", *FOUNDATION, "api", "worker"},
    "gateway": {"core", "db", "storage", "queue", "wire", "gateway"},
}
TOP = {"serve", "console", "bench", "cli"}  # may import anything
PROTOCOL_FORBIDDEN = ("torch", "sqlalchemy", "fastapi", "starlette", "transformers", "diffusers")


def part_of(module: str) -> str:
    """`pureinfer.api.native.serving` -> "api"; core modules -> "core"."""
    first = module.split(".")[1] if "." in module else "__init__"
    return "core" if first in CORE else first


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            found.append((node.lineno, mod))
            # `from pureinfer import x`: judge the submodule x where x is one (else it is core's).
            if mod == "pureinfer":
                found += [(node.lineno, f"pureinfer.{alias.name}") for alias in node.names
                          if (SRC / f"{alias.name}.py").exists() or (SRC / alias.name).is_dir()]
    return found


def sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "migrations" not in p.parts)


def test_the_source_tree_is_there() -> None:
    parts = {part_of(module_name(p)) for p in sources()}
    assert {"core", "engines", "api", "worker", "gateway", "storage", "db", "bench"} <= parts


def test_imports_run_one_way() -> None:
    wrong: list[str] = []
    for path in sources():
        here = part_of(module_name(path))
        if here in TOP:
            continue
        assert here in ALLOWED, f"{path}: part '{here}' has no place in the layout; add it to ALLOWED"
        for line, mod in imports_of(path):
            if not mod.startswith("pureinfer.") and mod != "pureinfer":
                continue
            there = part_of(mod)
            if there not in ALLOWED[here]:
                wrong.append(f"{path.relative_to(SRC.parent)}:{line} ({here}) imports {mod} ({there})")
    assert not wrong, "imports against the layout's direction:\n" + "\n".join(wrong)


def test_protocol_modules_are_wire_formats_only() -> None:
    wrong = [
        f"{path.relative_to(SRC.parent)}:{line} imports {mod}"
        for path in sources() if path.name == "protocol.py" or part_of(module_name(path)) == "wire"
        for line, mod in imports_of(path) if mod.split(".")[0] in PROTOCOL_FORBIDDEN
    ]
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """The rule bites: an engine importing the API, and a relative import climbing out, are found."""
    fake = tmp_path / "pureinfer" / "engines" / "text"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("from pureinfer.api.native import serving\nfrom ...worker import app\n")
    global SRC
    saved, SRC = SRC, tmp_path / "pureinfer"
    try:
        mods = [m for _, m in imports_of(fake / "bad.py")]
        assert mods == ["pureinfer.api.native", "pureinfer.worker"]
        assert {part_of(m) for m in mods} - ALLOWED["engines"] == {"api", "worker"}
    finally:
        SRC = saved


def import_graph(paths: list[Path]) -> dict[str, set[str]]:
    """Module -> the modules of this tree it names in an import (anywhere in the file: module level,
    inside functions, under TYPE_CHECKING). `from package import name` counts for the submodule
    `package.name` when there is one, else for the package."""
    known = {module_name(p) for p in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        here = module_name(path)
        edges: set[str] = set()
        tree = ast.parse(path.read_text(), filename=str(path))
        names = {(node.lineno, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 for alias in node.names}
        for line, mod in imports_of(path):
            subs = {f"{mod}.{name}" for ln, name in names if ln == line} & known
            edges |= subs or ({mod} & known)
        graph[here] = edges - {here}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles() -> None:
    """Within a part too, imports run one way: no two modules import each other, directly or round
    about (the gateway's app and its metrics once did, through a TYPE_CHECKING import of Gateway;
    the queue protocol once imported its own backends to choose one)."""
    assert cycles(import_graph(sources())) == []


def test_the_circle_finder_sees_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
