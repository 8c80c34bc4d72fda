"""Fast start-up: `lnprobe --help` and every command's and sub-command's `--help` run without importing
torch or transformers (the heavy libraries are imported by the commands' work, not by the command line)."""

import json
import subprocess
import sys

HEAVY = ("torch", "transformers", "peft", "nnsight", "accelerate", "safetensors")

# Runs in a fresh interpreter: walks the click command tree typer builds from the app and asks each
# command for its help; prints {"commands": [...], "failed": {...}, "heavy": [...]} as JSON.
SCRIPT = """
import contextlib, io, json, sys

import typer

from lnprobe import cli


def walk(command, path):
    yield path
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from walk(sub, [*path, name])


paths = list(walk(typer.main.get_command(cli.app), []))
failed = {}
for path in paths:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([*path, "--help"])
    if code != 0 or "Usage" not in out.getvalue():
        failed[" ".join(path)] = [code, out.getvalue()[-300:], err.getvalue()[-300:]]
heavy = [m for m in HEAVY if m in sys.modules]
print(json.dumps({"commands": [" ".join(p) for p in paths], "failed": failed, "heavy": heavy}))
"""


def _run(code: str) -> str:
    """Run `code` in a fresh interpreter; its stdout (it must exit 0)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _run_help_of_every_command() -> dict:
    return json.loads(_run(f"HEAVY = {HEAVY!r}\n{SCRIPT}").strip().splitlines()[-1])


def test_help_of_every_command_imports_no_heavy_library():
    result = _run_help_of_every_command()
    commands = set(result["commands"])
    # the walk reached the top level, commands, groups and sub-commands
    for expected in ("", "train", "sites", "regimes", "params", "data", "data synth", "pretrain backbones"):
        assert expected in commands, sorted(commands)
    assert len(commands) >= 25
    assert result["failed"] == {}
    assert result["heavy"] == [], f"--help imported {result['heavy']}"


def test_importing_the_command_line_imports_no_heavy_library():
    code = (
        "import sys\nfrom lnprobe import cli\nfrom lnprobe.cli.core import console\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    assert _run(code).strip() == "[]"


def test_regimes_command_imports_no_heavy_library():
    """The regime registries (presets, atoms and their summaries) load without torch."""
    code = (
        "import sys\nfrom lnprobe import cli\nassert cli.main(['regimes']) == 0\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = _run(code)
    assert "ln-simp" in out and out.strip().splitlines()[-1] == "[]"


def test_public_import_paths_still_work():
    """The lazily re-exporting packages still give the same names (and `lnprobe.models.load` stays the
    function after its submodule is imported)."""
    code = """
import lnprobe.models.load  # the submodule first: the package's `load` must stay the function
from lnprobe.models import load, resolve_config, TinyConfig
from lnprobe.train import TrainConfig, train, Callback
from lnprobe.pretrain.text import TextPretrainConfig
from lnprobe.pretrain.vision import VisionPretrainConfig
from lnprobe.pretrain.config import TextPretrainConfig as T2, VisionPretrainConfig as V2
import sys
assert callable(load) and load.__module__ == "lnprobe.models.load"
assert sys.modules["lnprobe.models.load"].resolve_config is resolve_config
assert TextPretrainConfig is T2 and VisionPretrainConfig is V2
assert train.__module__ == "lnprobe.train.trainer" and TrainConfig.__module__ == "lnprobe.train.config"
print("ok")
"""
    assert _run(code).strip() == "ok"
