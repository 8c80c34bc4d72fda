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
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

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


def imports(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module `source` (the code of `module`) imports, anywhere in it."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, `level - 1` steps up
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            if base == "lnprobe":  # `from lnprobe import regimes` imports the subpackage
                found.update(f"{base}.{alias.name}" for alias in node.names)
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
    assert violations("lnprobe.miniature.demo", {"typer.core"}) == ["lnprobe.miniature.demo imports typer (typer.core)"]
