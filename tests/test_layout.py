"""The package layout is the architecture: checked, not just described.

* ``core`` has no import cycle, counting imports inside functions too (so no
  function-level import can be hiding one);
* no module of ``core``, ``ui`` or ``benchmarks`` is over 450 lines;
* ``core`` never imports Streamlit, the UI or the benchmark harness (the
  CLI's ``bench`` command is the one door into ``benchmarks``);
* ``pages/`` holds page scripts only, and they import no private name.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 450


def _modules(pkg: str) -> dict[str, Path]:
    out = {}
    for p in sorted((ROOT / pkg).rglob("*.py")):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, names, line) of every import in ``path``, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [a.name for a in node.names], node.lineno))
    return found


def _targets(mod: str, names: list[str], known: dict[str, Path]) -> set[str]:
    """Project modules an import statement loads (``from a import b`` may name module ``a.b``)."""
    out = {m for m in (f"{mod}.{n}" for n in names) if m in known}
    if mod in known:
        out.add(mod)
    return out


def _graph(known: dict[str, Path]) -> dict[str, set[str]]:
    graph = {}
    for mod, path in known.items():
        deps = set()
        for target, names, _ in _imports(path):
            deps |= _targets(target, names, known)
        # A package's own __init__ is loaded first; edges to parents are not cycles.
        graph[mod] = {d for d in deps if d != mod and not mod.startswith(d + ".")}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_core_has_no_import_cycle_even_counting_imports_inside_functions():
    assert _cycle(_graph(_modules("core"))) is None


def test_no_module_over_the_line_limit():
    too_long = {str(p.relative_to(ROOT)): n for pkg in ("core", "ui", "benchmarks")
                for p in _modules(pkg).values() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert too_long == {}


def test_core_imports_no_ui_no_streamlit_and_benchmarks_only_from_its_cli_command():
    bad = []
    for mod, path in _modules("core").items():
        for target, _, line in _imports(path):
            top = target.split(".")[0]
            if top in ("streamlit", "ui", "pages") or (top == "benchmarks" and mod != "core.cli.bench"):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert bad == []


def test_pages_folder_holds_page_scripts_that_import_public_names_only():
    scripts = sorted((ROOT / "pages").glob("*.py"))
    assert scripts and not any(p.name.startswith("_") for p in scripts)
    private = [f"{p.name}:{line} {target}.{n}" for p in scripts for target, names, line in _imports(p)
               for n in names if n.startswith("_")]
    assert private == []
