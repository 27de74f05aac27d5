"""ARCHITECTURE.md's dependency rule, held against every import in the code.

Each top-level package may import only the packages listed for it below (the same table as
in ARCHITECTURE.md), and no two modules import each other, directly or around a circle,
counting imports inside functions too: a cycle broken only by a late import is still one
(imports under `if TYPE_CHECKING:` name types only and count for the rule, not for cycles).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package -> the project packages it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "calico": set(),
    "kernel": set(),
    "plugin": {"calico", "kernel"},
    "rkt": {"calico", "kernel"},
    "agent": {"calico", "kernel", "plugin", "rkt"},
    "calicoctl": {"calico", "kernel"},  # kernel.proc: node run/status judge pids
    "console": {"calico"},
    "lab": {"calico", "kernel", "plugin"},
}
PACKAGES = set(ALLOWED)


def modules() -> dict[str, Path]:
    """Every production module, by dotted name."""
    out = {}
    for pkg in sorted(PACKAGES):
        base = ROOT / pkg
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _typing_only(tree: ast.Module) -> set[int]:
    """Ids of import nodes under `if TYPE_CHECKING:`: they name types, run nothing."""
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                ids.update(id(n) for n in ast.walk(inner))
    return ids


def imports_of(name: str, path: Path, *, runtime_only: bool = False) -> list[tuple[int, str]]:
    """(line, dotted module) for every import in a module, at any depth; `from pkg import
    mod` names the submodule when there is one. `runtime_only` leaves out imports made
    only for type checkers."""
    known = modules()
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _typing_only(tree) if runtime_only else set()
    is_package = path.name == "__init__.py"
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if sub in known else base))
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", "") == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.append((node.lineno, str(node.args[0].value)))
    return found


def project_edges() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        graph[name] = {
            target
            for _, target in imports_of(name, path, runtime_only=True)
            if target.split(".")[0] in PACKAGES and target in known and target != name
        }
    return graph


def test_every_package_is_in_the_rule_table_and_in_architecture_md():
    on_disk = {
        p.name
        for p in ROOT.iterdir()
        if p.is_dir() and (p / "__init__.py").exists() and p.name not in ("tests", "bench")
    }
    assert on_disk == PACKAGES
    doc = (ROOT / "ARCHITECTURE.md").read_text()
    for pkg, allowed in ALLOWED.items():
        row = re.search(rf"^\| `{pkg}/` \| ([^|]*) \|", doc, flags=re.M)
        assert row, f"ARCHITECTURE.md has no dependency row for {pkg}/"
        in_doc = set(re.findall(r"`(\w+)/`", row.group(1)))
        assert in_doc == allowed, f"{pkg}/: ARCHITECTURE.md says {in_doc}, this test {allowed}"


@pytest.mark.parametrize("name", sorted(modules()))
def test_imports_follow_the_dependency_rule(name):
    pkg = name.split(".")[0]
    wrong = [
        f"{modules()[name].relative_to(ROOT)}:{line} imports {target}"
        for line, target in imports_of(name, modules()[name])
        if target.split(".")[0] in PACKAGES - {pkg} - ALLOWED[pkg]
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    graph = project_edges()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_a_forbidden_import(tmp_path):
    """The rule can fail: a console module importing the agent is caught."""
    fake = tmp_path / "view.py"
    fake.write_text("def f():\n    from agent.calc import calculate\n")
    found = imports_of("console.view", fake)
    assert (2, "agent.calc") in found
    assert "agent" in PACKAGES - {"console"} - ALLOWED["console"]
