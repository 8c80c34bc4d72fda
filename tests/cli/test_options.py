"""Commands generated from config dataclasses (`lnprobe.cli.options.config_command`): flags from fields, a
nested config flattened into flags and rebuilt, positional arguments, per-command defaults and help texts,
repeatable, separated and NAME=VALUE values, switches, `--config FILE`, and errors by flag name."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Annotated

import pytest
import typer

from lnprobe.cli.options import REQUIRED, config_command
from lnprobe.config import at_least, option, validate
from lnprobe.errors import InputError


@dataclass(frozen=True)
class Inner:
    data: str = option(help="Input file.")
    n: int = at_least(1, 32, "Examples.")
    device: str = option("cpu", "cpu or cuda.")

    def __post_init__(self) -> None:
        validate(self)
        if not self.data:
            raise InputError("--data is required")


@dataclass(frozen=True)
class Outer:
    ckpt: str = option(help="Checkpoint.", positional=True, metavar="CKPT")
    inputs: Inner = option(help="unused: a nested config's fields are the flags")
    out: str = option(help="Output directory.")
    other: str | None = option(None, "Second checkpoint.", positional=True, metavar="OTHER")
    metrics: tuple[str, ...] = option(("a", "b"), "Metrics.", flags=("--metric", "-m"))
    kinds: tuple[str, ...] = option(("x",), "Kinds, comma-separated.", sep=",")
    lrs: tuple[float, ...] = option((1.0,), "Learning rates, comma-separated.", sep=",")
    named: dict[str, str] = option(
        help="NAME=SPEC pairs.", default_factory=dict, flags=("--model",), metavar="NAME=SPEC"
    )
    split: bool = option(True, "Split.")
    force: bool = option(False, "Replace.", switch=True)

    def __post_init__(self) -> None:
        validate(self)


def command(**kw):
    """(click command, list that receives the configs it is called with) of a generated command."""
    seen = []
    app = typer.Typer()

    @app.command()
    @config_command(Outer, **kw)
    def run(config: Outer, **extra) -> None:
        """Run."""
        seen.append((config, extra))

    @app.command("other")
    def other() -> None:  # two commands, so the one above is addressed by name
        pass

    return typer.main.get_command(app), seen


def invoke(cmd, *args: str):
    return cmd.main(["run", *args], standalone_mode=False)


def usage_error(cmd, *args: str) -> str:
    """The message of the usage error (typer's own click exception) that `args` raise."""
    with pytest.raises(Exception) as info:  # noqa: B017 (typer >= 0.26 vendors click's exception classes)
        invoke(cmd, *args)
    assert hasattr(info.value, "format_message"), info.value
    return info.value.format_message()


def test_flags_nested_positional_and_defaults():
    cmd, seen = command(defaults={"out": "runs/x", "n": 64})
    invoke(cmd, "A", "--data", "d.json")
    config, _ = seen[-1]
    assert config == Outer(ckpt="A", inputs=Inner(data="d.json", n=64), out="runs/x")
    invoke(cmd, "A", "B", "--data", "d", "--n", "3", "--device", "cuda", "-m", "c", "--metric", "d",
           "--kinds", "p, q,", "--lrs", "0.1,2", "--model", "lora=L", "--model", "x=y", "--no-split",
           "--force", "--out", "o")  # fmt: skip
    config, _ = seen[-1]
    assert config.other == "B" and config.inputs == Inner(data="d", n=3, device="cuda")
    assert (config.metrics, config.kinds, config.lrs) == (("c", "d"), ("p", "q"), (0.1, 2.0))
    assert config.named == {"lora": "L", "x": "y"} and config.split is False and config.force is True


def test_unset_flags_keep_the_config_defaults():
    cmd, seen = command(defaults={"out": "o"})
    invoke(cmd, "A", "--data", "d")
    config, _ = seen[-1]
    assert (config.metrics, config.kinds, config.named, config.split, config.force) == (
        ("a", "b"), ("x",), {}, True, False,
    )  # fmt: skip


def test_required_fields_and_bad_values_name_the_flag():
    cmd, _ = command()
    assert "ckpt" in usage_error(cmd, "--data", "d", "--out", "o").lower()
    assert "--out" in usage_error(cmd, "A", "--data", "d")
    cmd, _ = command(defaults={"out": "o", "data": ""})
    with pytest.raises(InputError, match="--data is required"):
        invoke(cmd, "A")
    with pytest.raises(InputError, match="--n 0: must be >= 1"):
        invoke(cmd, "A", "--data", "d", "--n", "0")
    with pytest.raises(InputError, match="--model 'lora': expected NAME=SPEC"):
        invoke(cmd, "A", "--data", "d", "--model", "lora")
    with pytest.raises(InputError, match="--lrs: expected ,-separated numbers"):
        invoke(cmd, "A", "--data", "d", "--lrs", "fast")
    assert "--no-force" in usage_error(cmd, "A", "--data", "d", "--no-force")  # a switch has no negation


def test_help_texts_defaults_and_overrides():
    cmd, _ = command(defaults={"out": "runs/x", "n": 64}, helps={"n": "Examples per probe."})
    params = {p.name: p for p in cmd.commands["run"].params}
    assert params["n"].help == "Examples per probe. (default: 64)"
    assert params["device"].help == "cpu or cuda. (default: cpu)"
    assert params["out"].help == "Output directory. (default: runs/x)"
    assert params["metrics"].help == "Metrics. (default: a, b)"
    assert params["metrics"].opts == ["--metric", "-m"]
    assert params["kinds"].help == "Kinds, comma-separated. (default: x)"
    assert params["split"].secondary_opts == ["--no-split"] and params["force"].secondary_opts == []
    assert [p.name for p in cmd.commands["run"].params[:2]] == ["ckpt", "other"]  # arguments first


def test_config_file_extras_and_skip(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"out": "from-file", "inputs": {"data": "f", "n": 5}}))
    extra = {"times": (int, 1), "name": (Annotated[str, typer.Option()], REQUIRED)}
    cmd, seen = command(config_file="A file.", extra=extra, skip=("device",))
    invoke(cmd, "A", "--config", str(tmp_path / "c.json"), "--n", "7", "--name", "x")
    config, extras = seen[-1]
    assert (config.out, config.inputs) == ("from-file", Inner(data="f", n=7))
    assert extras == {"times": 1, "name": "x"}
    assert "device" not in {p.name for p in cmd.commands["run"].params}
    (tmp_path / "bad.json").write_text(json.dumps({"out": "o", "inputs": {"data": "f"}, "nope": 1}))
    with pytest.raises(InputError, match="bad.json: unknown field"):
        invoke(cmd, "A", "--config", str(tmp_path / "bad.json"), "--name", "x")


def test_a_field_without_a_command_line_form_is_refused():
    @dataclass(frozen=True)
    class Odd:
        table: dict = dataclasses.field(default_factory=dict)
        pairs: list[int] = dataclasses.field(default_factory=list)

    with pytest.raises(TypeError, match="pairs"):
        config_command(Odd)(lambda config: None)
    config_command(Odd, skip=("pairs",))(lambda config: None)  # untyped dict: NAME=VALUE pairs
    with pytest.raises(TypeError, match="unknown per-command names"):
        config_command(Outer, defaults={"nope": 1})


def test_every_generated_command_keeps_its_flags():
    """The flags these commands had before they were generated (documented in docs/cli.md) all exist, and
    the bare switches (`--force`, `--online`) gained no negation."""
    from lnprobe import cli

    app = typer.main.get_command(cli.app)
    inputs = "--data --n --batch-size --template --image-folder --seed --device"
    expected = {
        "similarity": f"{inputs} --out --metric -m --site -s --tokens --max-rows --bootstrap "
        "--save-activations --force",
        "gradvar": f"{inputs} --out --unit --group -g --activations --no-activations --force",
        "lnshift": f"{inputs} --base --out --modality-split --no-modality-split --outlier-factor --force",
        "claims": f"{inputs} --base --ln --full --model --out --ln-run --full-run --tokens --bootstrap "
        "--force",
        "eval": "--bench --data --out --images --template --prompt --batch-size --max-new-tokens --limit "
        "--device --dtype --online --predictions --force --no-force",
        "assemble": "--llm --vision --out --connector --seed --online --force",
        "data synth": "--n --seed --text-scenes --qtypes --max-shapes --force",
        "data subset": "--data --out --per-kind --tokens-per-kind --model --seed --force",
    }
    for path, flags in expected.items():
        command = app
        for name in path.split():
            command = command.commands[name]
        known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
        assert set(flags.split()) <= known, (path, sorted(set(flags.split()) - known))
        assert "--no-online" not in known and ("--no-force" not in known or path == "eval"), path
