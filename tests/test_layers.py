"""The dependency rules between lnprobe's layers, checked statically on the source of every module.

Every import counts: module-level and inside functions, `from lnprobe import x`, relative imports, and
imports by name (`importlib.import_module("lnprobe.x")`, or a registry's "lnprobe.x.y:function" runner).

    models       never imports regimes, checkpoints, train, probes or the command line (a checkpoint
                 format that needs more, such as lnprobe's delta, registers itself in models.formats)
    regimes      never imports checkpoints, train, probes or the command line
    checkpoints  (delta format, delta loading, PEFT export: above regimes) never imports train, probes,
                 claims, eval or the command line
    probes       never imports the command line or the training loop (lnprobe.train.trainer)
    cli          nothing imports lnprobe.cli but lnprobe.cli itself (and a lnprobe/__main__.py); typer is
                 imported only there

And no import cycle between lnprobe's modules. The graph has an edge from a module to each module it imports
anywhere that runs (function-level imports and by-name imports count; `if TYPE_CHECKING:` blocks never
run, so they do not): `from pkg import name` goes to the submodule `pkg.name` when there is one, to the
submodule a package exports `name` from lazily (`lazy_exports(__name__, {...})`), else to the package's
`__init__`. A cycle is named module by module in the failure message.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import lnprobe

ROOT = Path(lnprobe.__file__).parent

FORBIDDEN = {
    "lnprobe.models": (
        "lnprobe.regimes",
        "lnprobe.checkpoints",
        "lnprobe.train",
        "lnprobe.probes",
        "lnprobe.cli",
    ),
    "lnprobe.regimes": ("lnprobe.checkpoints", "lnprobe.train", "lnprobe.probes", "lnprobe.cli"),
    "lnprobe.checkpoints": (
        "lnprobe.train",
        "lnprobe.probes",
        "lnprobe.claims",
        "lnprobe.eval",
        "lnprobe.cli",
    ),
    "lnprobe.probes": ("lnprobe.cli", "lnprobe.train.trainer"),
}
CLI = "lnprobe.cli"
CLI_IMPORTERS = (CLI, "lnprobe.__main__")
BY_NAME = re.compile(r"^(lnprobe(?:\.\w+)+)(?::\w+)?$")  # "lnprobe.x.y" or "lnprobe.x.y:function"
IMPORT_CALLS = {"import_module", "__import__"}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts).removesuffix(".__init__")


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", "")
    return isinstance(node, ast.If) and name == "TYPE_CHECKING"


def _walk(tree: ast.AST, runtime: bool):
    """ast.walk, leaving out the bodies of `if TYPE_CHECKING:` when `runtime` (they never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        children = list(ast.iter_child_nodes(node))
        if runtime and _is_type_checking(node):
            children = [c for c in children if c is node.test or c in node.orelse]
        todo.extend(children)


def imports(source: str, module: str, is_package: bool = False, runtime: bool = False) -> set[str]:
    """Every module `source` (the code of `module`) imports, anywhere in it (with `runtime`: leaving out
    `if TYPE_CHECKING:` blocks). `from pkg import name` gives `pkg.name` (a submodule, or a name the graph
    resolves to `pkg`) and, for the layer rules, `pkg`."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in _walk(ast.parse(source), runtime):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, `level - 1` steps up
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found.update(f"{base}.{alias.name}" for alias in node.names)  # a submodule, or a name in base
            if not runtime:  # the graph resolves a name to `base` itself, a submodule to the submodule
                found.add(base)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            arg = node.args[0] if node.args else None
            if name in IMPORT_CALLS and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.add(arg.value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = BY_NAME.match(node.value)
            if match:
                found.add(match.group(1))
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(module: str, imported: set[str]) -> list[str]:
    """The rules `module` breaks by importing `imported`, one line per forbidden target."""
    forbidden = [f for layer, targets in FORBIDDEN.items() if _within(module, layer) for f in targets]
    if not any(_within(module, m) for m in CLI_IMPORTERS):
        forbidden += [CLI, "typer"]
    return [
        f"{module} imports {target} ({', '.join(sorted(n for n in imported if _within(n, target)))})"
        for target in forbidden
        if any(_within(n, target) for n in imported)
    ]


def check_tree(root: Path) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        problems += violations(module, imports(path.read_text(), module, path.name == "__init__.py"))
    return problems


def lazy_names(source: str) -> dict[str, str]:
    """A package's lazily exported names: `name` -> submodule (relative, dotted), from the dict literal that
    `__getattr__, __dir__ = lazy_exports(__name__, NAME)` is given."""
    tree = ast.parse(source)
    dicts = {
        t.id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", "") == "lazy_exports"
            and len(node.args) == 2
        ):
            table = dicts.get(getattr(node.args[1], "id", ""))
            if table is not None:
                return {k.value: v.value for k, v in zip(table.keys, table.values, strict=True)}
    return {}


def _resolve(name: str, modules: set[str], lazy: dict[str, dict[str, str]]) -> str | None:
    """The lnprobe module that importing `name` runs: itself, a lazy export's submodule, or the longest
    enclosing module (a package's __init__ for a name defined there); None outside lnprobe."""
    if name in modules:
        return name
    package, _, last = name.rpartition(".")
    if last in lazy.get(package, {}):
        return f"{package}.{lazy[package][last]}"
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the modules it imports (at run time, anywhere in it), for every module under `root`."""
    sources = {
        module_name(path, root): (path.read_text(), path.name == "__init__.py")
        for path in sorted(root.rglob("*.py"))
    }
    lazy = {m: lazy_names(src) for m, (src, is_package) in sources.items() if is_package}
    graph = {}
    for module, (source, is_package) in sources.items():
        targets = (_resolve(n, set(sources), lazy) for n in imports(source, module, is_package, runtime=True))
        graph[module] = {t for t in targets if t and t != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle: one shortest cycle through each strongly connected group of modules, as the
    path `a -> b -> ... -> a` (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = set()
                    while True:
                        member = stack.pop()
                        group.add(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(group)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in stack:
                low[node] = min(low[node], index[child])
    return [_shortest_cycle(graph, group) for group in groups]


def _shortest_cycle(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest cycle through the first module of `group` (breadth-first inside the group)."""
    start = min(group)
    paths = {start: [start]}
    todo = [start]
    while todo:
        node = todo.pop(0)
        for child in sorted(graph[node] & group):
            if child == start:
                return [*paths[node], start]
            if child not in paths:
                paths[child] = [*paths[node], child]
                todo.append(child)
    raise AssertionError(f"no cycle through {start}")  # a strongly connected group always has one


def _assert_no_cycle(root: Path) -> None:
    found = cycles(import_graph(root))
    assert found == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_no_import_cycle_between_lnprobe_modules():
    _assert_no_cycle(ROOT)


def test_every_module_keeps_the_dependency_rules():
    problems = check_tree(ROOT)
    assert problems == [], "\n".join(problems)


def test_the_layers_named_in_the_rules_exist():
    for layer in [*FORBIDDEN, CLI]:
        path = ROOT / layer.removeprefix("lnprobe.").replace(".", "/")
        assert path.is_dir() or path.with_suffix(".py").is_file(), layer


def test_the_check_sees_every_kind_of_import():
    source = """
import lnprobe.errors
from lnprobe import regimes
from lnprobe.regimes.base import apply_regime


def later():
    from lnprobe.checkpoints import delta  # inside a function
    import importlib

    importlib.import_module("lnprobe.train.trainer")
    RUNNER = "lnprobe.probes.gradvar.run:run_gradvar"
    from ..cli import app  # relative, two levels up from lnprobe.models.load
"""
    found = imports(source, "lnprobe.models.load")
    assert {
        "lnprobe.errors",
        "lnprobe.regimes",
        "lnprobe.regimes.base",
        "lnprobe.checkpoints",
        "lnprobe.train.trainer",
        "lnprobe.probes.gradvar.run",
        "lnprobe.cli",
    } <= found
    broken = violations("lnprobe.models.load", found)
    for target in ("regimes", "checkpoints", "train", "probes", "cli"):
        assert any(b.startswith(f"lnprobe.models.load imports lnprobe.{target} (") for b in broken), broken
    assert violations("lnprobe.cli.train", {"lnprobe.cli.console", "typer", "lnprobe.train"}) == []
    assert violations("lnprobe.probes.gradvar.run", {"lnprobe.train.loss", "lnprobe.models"}) == []
    assert violations("lnprobe.miniature.demo", {"typer.core"}) == [
        "lnprobe.miniature.demo imports typer (typer.core)"
    ]


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return root / "pkg"


def test_a_planted_cycle_fails_naming_its_modules(tmp_path):
    """A throwaway package: a cycle through a function-level import and a lazily exported name is found
    and named; an import under TYPE_CHECKING and a parent package's `__init__` make no cycle."""
    pkg = _package(
        tmp_path,
        {
            "__init__.py": "from pkg import low  # noqa\n",
            "low.py": "X = 1\n",
            "a.py": "def later():\n    from pkg.sub import Thing  # lazily exported by pkg.sub\n",
            "sub/__init__.py": (
                "from typing import TYPE_CHECKING\nfrom pkg.lazy import lazy_exports\n"
                '_LAZY = {"Thing": "b"}\n__getattr__, __dir__ = lazy_exports(__name__, _LAZY)\n'
                "if TYPE_CHECKING:\n    from pkg.sub.b import Thing\n"
            ),
            "sub/b.py": "from pkg import a, low\nThing = a\n",
            "typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import typed2\n",
            "typed2.py": "from pkg import typed\n",
            "lazy.py": "",
        },
    )
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.a", "pkg.low"}
    assert graph["pkg.sub"] == {"pkg.lazy"} and graph["pkg.typed"] == set()
    assert cycles(graph) == [["pkg.a", "pkg.sub.b", "pkg.a"]]
    with pytest.raises(AssertionError, match=r"import cycles:\n\s*pkg\.a -> pkg\.sub\.b -> pkg\.a\n"):
        _assert_no_cycle(pkg)
    (pkg / "a.py").write_text("X = 2\n")  # the cycle broken: the check passes
    _assert_no_cycle(pkg)


def test_cycles_name_one_shortest_path_per_group():
    graph = {"a": {"b"}, "b": {"c", "a"}, "c": {"a"}, "d": {"e"}, "e": {"d"}, "f": {"a"}}
    assert cycles(graph) == [["a", "b", "a"], ["d", "e", "d"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
