"""The README's commands and Python snippet work as written, and notebooks match their paired scripts."""

import re
import shlex
from pathlib import Path

import jupytext
import pytest

from lnprobe import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _lnprobe_commands() -> list[str]:
    lines = [line.split("#")[0].strip() for block in _blocks("bash") for line in block.splitlines()]
    return [line for line in lines if line.startswith("lnprobe ")]


def test_readme_shows_the_two_commands():
    assert "make demo" in _blocks("bash")[0] and "make test" in _blocks("bash")[0]


def test_readme_cli_commands_run(tmp_path, monkeypatch, capsys):
    commands = _lnprobe_commands()
    assert len(commands) >= 5
    monkeypatch.chdir(tmp_path)  # commands write to runs/... relative to the working directory
    for command in commands:
        code = cli.main(shlex.split(command)[1:])
        assert code == 0, (command, capsys.readouterr().err)


def test_readme_python_snippet_runs(tmp_path, monkeypatch, capsys):
    (snippet,) = _blocks("python")
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet, "README.md", "exec"), {})
    assert "ln-simp" in capsys.readouterr().out


@pytest.mark.parametrize("script", sorted((ROOT / "notebooks").glob("*.py")), ids=lambda p: p.name)
def test_notebook_matches_its_script(script):
    notebook = script.with_suffix(".ipynb")
    assert notebook.is_file(), f"run: jupytext --to ipynb {script}"
    ours = [(c.cell_type, c.source) for c in jupytext.read(script).cells]
    theirs = [(c.cell_type, c.source) for c in jupytext.read(notebook).cells]
    assert ours == theirs, f"{notebook.name} is out of date: jupytext --sync {script}"
