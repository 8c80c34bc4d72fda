"""Every command, given bad input, must: exit 2, print exactly one stderr line `lnprobe: error: ...`, no
traceback, create no file anywhere in the tree it was pointed at, and leave every input byte-identical.

Cases come from three sources: the declared ranges of the config dataclasses (a value just outside each
numeric flag's range, for every command), a table of crafted files (non-UTF-8, huge integers, wrong types,
truncated/pickle-only checkpoints, symlink loops, outputs that are or contain inputs, ...), and
property-based generation (hypothesis) of malformed records and out-of-range flag values."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lnprobe import cli
from lnprobe.config import Range, flag_of
from lnprobe.data.synth import SynthConfig, write_synth
from lnprobe.models import TinyConfig, save_tiny

# -- the world: inputs every case may read (never written) -------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    save_tiny(root / "tiny", TinyConfig(seed=0))
    write_synth(root / "data", SynthConfig(n=24, seed=0))  # 5 held-out records
    return root


def snapshot(*roots: Path) -> dict[str, str]:
    """Every path under `roots` with a hash of its bytes (links by target)."""
    out = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                if p.is_symlink():
                    out[str(p)] = "link:" + os.readlink(p)
                elif p.is_file():
                    out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
                else:
                    out[str(p)] = "dir"
    return out


def assert_clean_failure(argv: list[str], capfd, *roots: Path, fragment: str | None = None) -> str:
    before = snapshot(*roots)
    code = cli.main(argv)
    out, err = capfd.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, f"{argv}: exit {code}\n{err}"
    assert len(lines) == 1 and lines[0].startswith("lnprobe: error: "), f"{argv}:\n{err}"
    assert "Traceback" not in err + out
    after = snapshot(*roots)
    assert after == before, f"{argv}: files changed: {sorted(set(after.items()) ^ set(before.items()))[:4]}"
    if fragment:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def case(tmp_path, world, monkeypatch):
    """A scratch directory (the working directory) for one case; returns (dir, run(argv, fragment))."""
    monkeypatch.chdir(tmp_path)

    def run(argv, capfd, fragment=None):
        return assert_clean_failure([str(a) for a in argv], capfd, tmp_path, world, fragment=fragment)

    return tmp_path, run


# -- 1. every declared range, for every command ------------------------------------------------------------


def _outside(rng: Range, integer: bool) -> list[str]:
    """Values just outside a range, as the command line would pass them."""
    values = []
    if rng.lo is not None:
        lo = rng.lo if rng.lo_open else rng.lo - 1
        values.append(str(int(lo)) if integer else repr(float(lo) if rng.lo_open else float(rng.lo) - 0.5))
    if rng.hi is not None:
        hi = rng.hi if rng.hi_open else rng.hi + 1
        values.append(str(int(hi)) if integer else repr(float(hi) if rng.hi_open else float(rng.hi) + 0.5))
    if not integer:
        values += ["nan", "inf"]
    return values


def _ranged_fields(cls) -> list[tuple[str, Range, bool]]:
    import typing

    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):  # nested settings (a probe's ProbeInputs): same flags
            out += _ranged_fields(hints[f.name])
            continue
        rng = f.metadata.get("range")
        if rng is not None:
            integer = "int" in str(hints[f.name]) and "float" not in str(hints[f.name])
            out.append((f.name, rng, integer))
    return out


def _command_argv(world: Path, command: str) -> list[str]:
    """A valid command line for `command`, to which one bad flag is added."""
    tiny, data = str(world / "tiny"), str(world / "data" / "eval.json")
    return {
        "train": ["train", "--model", tiny, "--data", data, "--out", "o"],
        "similarity": ["similarity", tiny, "--data", data, "--out", "o"],
        "gradvar": ["gradvar", tiny, "--data", data, "--out", "o"],
        "lnshift": ["lnshift", tiny, "--base", tiny, "--data", data, "--out", "o"],
        "patch": ["patch", "--base", tiny, "--tuned", tiny, "--data", data, "--out", "o"],
        "attention": ["attention", "--model", f"a={tiny}", "--data", data, "--out", "o"],
        "linprobe": ["linprobe", "--model", f"a={tiny}", "--data", data, "--out", "o"],
        "claims": ["claims", "--base", tiny, "--ln", tiny, "--full", tiny, "--data", data, "--out", "o"],
        "eval": ["eval", tiny, "--bench", "pope", "--data", str(world / "data"), "--out", "o"],
        "forgetting": ["forgetting", tiny, tiny, "--text", data, "--out", "o"],
        "data synth": ["data", "synth", "o"],
        "data easy-vqa": ["data", "easy-vqa", "o"],
        "data subset": ["data", "subset", "--data", data, "--per-kind", "1", "--out", "o.json"],
        "assemble": ["assemble", "--llm", tiny, "--vision", tiny, "--out", "o"],
        "pretrain text": ["pretrain", "text", "--llm", tiny, "--data", data, "--out", "o"],
        "pretrain vision": ["pretrain", "vision", "--vision", tiny, "--data", data, "--out", "o"],
        "pretrain backbones": ["pretrain", "backbones", "--out", "o"],
    }[command]


def range_cases() -> list[tuple[str, str, str]]:
    """(command, flag, value) for every ranged field of every command's config."""
    from lnprobe.claims import ClaimsConfig
    from lnprobe.data.easyvqa import EasyVqaConfig
    from lnprobe.data.subset import SubsetConfig
    from lnprobe.eval.run import EvalConfig
    from lnprobe.miniature.backbones import BackbonesConfig
    from lnprobe.models.assemble import AssembleConfig
    from lnprobe.pretrain.config import TextPretrainConfig, VisionPretrainConfig
    from lnprobe.probes.attention import AttentionConfig
    from lnprobe.probes.forgetting import ForgettingConfig
    from lnprobe.probes.gradvar import GradVarConfig
    from lnprobe.probes.linprobe import LinprobeConfig
    from lnprobe.probes.lnshift import LnShiftConfig
    from lnprobe.probes.patch import PatchConfig
    from lnprobe.probes.similarity import SimilarityConfig
    from lnprobe.train.config import TrainConfig

    classes = {
        "train": TrainConfig,
        "similarity": SimilarityConfig,
        "gradvar": GradVarConfig,
        "lnshift": LnShiftConfig,
        "patch": PatchConfig,
        "attention": AttentionConfig,
        "linprobe": LinprobeConfig,
        "claims": ClaimsConfig,
        "eval": EvalConfig,
        "forgetting": ForgettingConfig,
        "data synth": SynthConfig,
        "data easy-vqa": EasyVqaConfig,
        "data subset": SubsetConfig,
        "assemble": AssembleConfig,
        "pretrain text": TextPretrainConfig,
        "pretrain vision": VisionPretrainConfig,
        "pretrain backbones": BackbonesConfig,
    }
    cases = []  # every ranged field is a flag of its command (the commands are generated from the configs)
    for command, cls in classes.items():
        for name, rng, integer in _ranged_fields(cls):
            cases += [(command, flag_of(name), v) for v in _outside(rng, integer)]
    return cases


RANGE_CASES = range_cases()


@pytest.mark.parametrize(
    ("command", "flag", "value"), RANGE_CASES, ids=[f"{c}{f}={v}" for c, f, v in RANGE_CASES]
)
def test_out_of_range_flag(command, flag, value, case, capfd, world):
    _, run = case
    argv = _command_argv(world, command)
    argv = [*argv, f"{flag}={value}"]
    line = run(argv, capfd)
    assert flag in line or "Invalid value" in line


# -- 2. crafted files and locations -----------------------------------------------------------------------


def _record(**over):
    rec = {
        "id": "r0",
        "image": "images/00000.png",
        "conversations": [
            {"from": "human", "value": "<image>\nWhat is shown?"},
            {"from": "gpt", "value": "a red circle"},
        ],
    }
    rec.update(over)
    return rec


def _data_file(d: Path, world: Path, content: bytes | str, name: str = "d.json") -> Path:
    """A data file beside a copy of the world's images (records name images/...)."""
    if not (d / "images").exists():
        shutil.copytree(world / "data" / "images", d / "images")
    path = d / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


DATA_CASES = {
    "non_utf8": (b'[{"id": "\xff\xfe"}]', "not UTF-8"),
    "huge_int_id": ('[{"id": ' + "9" * 5000 + "}]", "unreadable JSON"),
    "malformed_json": ('[{"id": 1,', "malformed JSON"),
    "object_not_list": ('{"id": 1}', "JSON list"),
    "empty_list": ("[]", "empty"),
    "record_not_object": ("[1, 2]", "expected an object"),
    "no_conversations": (json.dumps([{"id": 1, "image": "images/00000.png"}]), "conversations"),
    "no_gpt_turn": (
        json.dumps([_record(conversations=[{"from": "human", "value": "<image>\nhi"}])]),
        "assistant",
    ),
    "two_image_tokens": (
        json.dumps(
            [
                _record(
                    conversations=[
                        {"from": "human", "value": "<image><image>"},
                        {"from": "gpt", "value": "x"},
                    ]
                )
            ]
        ),
        "image-token count",
    ),
    "image_not_string": (json.dumps([_record(image=5)]), "path string"),
    "missing_image": (json.dumps([_record(image="images/nope.png")]), "image missing"),
    "turn_value_not_string": (
        json.dumps([_record(conversations=[{"from": "human", "value": 3}, {"from": "gpt", "value": "x"}])]),
        "string 'value'",
    ),
    "roles_not_alternating": (
        json.dumps(
            [_record(conversations=[{"from": "gpt", "value": "<image>"}, {"from": "human", "value": "x"}])]
        ),
        "alternate",
    ),
    "deep_nesting": ("[" * 200_000 + "]" * 200_000, "JSON"),
    "nan_literal_record": ("[NaN]", "expected an object"),
}


@pytest.mark.parametrize("name", sorted(DATA_CASES))
@pytest.mark.parametrize("command", ["train", "gradvar", "similarity", "data subset"])
def test_malformed_data(name, command, case, capfd, world):
    d, run = case
    content, fragment = DATA_CASES[name]
    data = _data_file(d, world, content)
    tiny = world / "tiny"
    argv = {
        "train": ["train", "--model", tiny, "--data", data, "--out", d / "o", "--max-steps", "1"],
        "gradvar": ["gradvar", tiny, "--data", data, "--out", d / "o"],
        "similarity": ["similarity", tiny, "--data", data, "--out", d / "o"],
        "data subset": ["data", "subset", "--data", data, "--per-kind", "1", "--out", d / "o.json"],
    }[command]
    if command == "data subset" and name in ("missing_image", "empty_list"):
        pytest.skip("subset copies records; it does not open images, and an empty file has no kinds")
    run(argv, capfd, fragment=None if command == "similarity" else fragment)  # it may stop on the count


def test_text_file_named_png_is_found_before_training(case, capfd, world):
    d, run = case
    data = _data_file(d, world, json.dumps([_record(image="images/bad.png")]))
    (d / "images" / "bad.png").write_text("not an image")
    run(["train", "--model", world / "tiny", "--data", data, "--out", d / "o"], capfd, "bad.png")


def test_truncated_image(case, capfd, world):
    d, run = case
    data = _data_file(d, world, json.dumps([_record(image="images/cut.png")]))
    good = (world / "data" / "images" / "00000.png").read_bytes()
    (d / "images" / "cut.png").write_bytes(good[: len(good) // 2])
    run(["gradvar", world / "tiny", "--data", data, "--out", d / "o"], capfd, "cut.png")


def _checkpoint_copy(d: Path, world: Path) -> Path:
    ckpt = d / "ckpt"
    shutil.copytree(world / "tiny", ckpt)
    return ckpt


CHECKPOINT_CASES = {
    "hidden_size_string": lambda c: _edit_config(c, hidden_size="sixty-four"),
    "layers_negative": lambda c: _edit_config(c, num_hidden_layers=-2),
    "config_not_json": lambda c: (c / "config.json").write_text("{not json"),
    "config_non_utf8": lambda c: (c / "config.json").write_bytes(b"\xff\xfe{}"),
    "config_is_list": lambda c: (c / "config.json").write_text("[1]"),
    "truncated_safetensors": lambda c: _truncate(c / "model.safetensors"),
    "pickle_only": lambda c: (c / "model.safetensors").rename(c / "pytorch_model.bin"),
    "empty_dir": lambda c: [p.unlink() for p in list(c.iterdir()) if p.is_file()],
}


def _edit_config(ckpt: Path, **changes) -> None:
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["text_config"].update(changes)
    (ckpt / "config.json").write_text(json.dumps(cfg))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


@pytest.mark.parametrize("name", sorted(CHECKPOINT_CASES))
@pytest.mark.parametrize("command", ["params", "train", "similarity"])
def test_broken_checkpoint(name, command, case, capfd, world):
    d, run = case
    ckpt = _checkpoint_copy(d, world)
    CHECKPOINT_CASES[name](ckpt)
    if command == "params" and name in ("truncated_safetensors", "pickle_only"):
        pytest.skip("params reads only the config")
    data = world / "data" / "eval.json"
    argv = {
        "params": ["params", ckpt],
        "train": ["train", "--model", ckpt, "--data", data, "--out", d / "o", "--max-steps", "1"],
        "similarity": ["similarity", ckpt, "--data", data, "--out", d / "o"],
    }[command]
    run(argv, capfd, fragment=str(ckpt))


def test_symlink_loops(case, capfd, world):
    d, run = case
    (d / "loop").symlink_to(d / "loop")
    run(["train", "--model", world / "tiny", "--data", d / "loop", "--out", d / "o"], capfd)
    run(["params", d / "loop"], capfd)
    run(["gradvar", d / "loop", "--data", world / "data" / "eval.json", "--out", d / "o"], capfd)


CONFIG_FILES = {
    "lr_abc.yaml": ("lr: abc\n", "--lr"),
    "malformed.yaml": ("lr: [1, \n", "malformed YAML"),
    "unknown_key.yaml": ("learning_rate: 1\n", "unknown field"),
    "not_mapping.yaml": ("- 1\n- 2\n", "mapping"),
    "non_utf8.yaml": (b"lr: \xff\n", "not UTF-8"),
    "bad.json": ('{"lr": ', "malformed JSON"),
    "batch_float.yaml": ("batch_size: 2.5\n", "--batch-size"),
    "steps_string.yaml": ("max_steps: ten\n", "--max-steps"),
    "log_every_zero.yaml": ("log_every: 0\n", "--log-every"),
    "lr_negative_norm.yaml": ("lr_norm: -0.001\n", "--lr-norm"),
}


@pytest.mark.parametrize("name", sorted(CONFIG_FILES))
def test_bad_config_file(name, case, capfd, world):
    d, run = case
    content, fragment = CONFIG_FILES[name]
    cfg = d / name
    cfg.write_bytes(content if isinstance(content, bytes) else content.encode())
    argv = ["train", "--config", cfg, "--model", world / "tiny", "--data", world / "data" / "eval.json"]
    run([*argv, "--out", d / "o"], capfd, fragment)


def test_outputs_in_impossible_places(case, capfd, world):
    d, run = case
    (d / "file").write_text("x")
    data = world / "data" / "eval.json"
    for out in (d / "file" / "sub", "/proc/lnprobe-test/out"):
        run(["similarity", world / "tiny", "--data", data, "--out", out], capfd, "--out")
        run(["train", "--model", world / "tiny", "--data", data, "--out", out], capfd)
        run(["data", "synth", out], capfd)
        run(["tiny", out], capfd)


INPUT_OVERLAP = ("similarity", "gradvar", "lnshift", "patch", "attention", "linprobe", "claims", "train",
                 "eval", "forgetting")  # fmt: skip


def _argv_with_out(command: str, model: Path, data: Path, out: Path) -> list:
    return {
        "similarity": ["similarity", model, "--data", data, "--out", out],
        "gradvar": ["gradvar", model, "--data", data, "--out", out],
        "lnshift": ["lnshift", model, "--base", model, "--data", data, "--out", out],
        "patch": ["patch", "--base", model, "--tuned", model, "--data", data, "--out", out],
        "attention": ["attention", "--model", f"a={model}", "--data", data, "--out", out],
        "linprobe": ["linprobe", "--model", f"a={model}", "--data", data, "--out", out],
        "claims": ["claims", "--base", model, "--ln", model, "--full", model, "--data", data, "--out", out],
        "train": ["train", "--model", model, "--data", data, "--out", out],
        "eval": ["eval", model, "--bench", "pope", "--data", data.parent, "--out", out],
        "forgetting": ["forgetting", model, model, "--text", data, "--out", out],
    }[command]


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
@pytest.mark.parametrize("command", INPUT_OVERLAP)
def test_output_equal_to_or_containing_an_input(command, force, case, capfd, world):
    """--out naming the model, or a folder holding the model or the data: refused, inputs untouched."""
    d, run = case
    model = _checkpoint_copy(d, world)
    inner = d / "holder" / "data"
    inner.mkdir(parents=True)
    data = _data_file(inner, world, (world / "data" / "eval.json").read_bytes(), "eval.json")
    extra = ["--force"] if force and command != "train" else []
    run([*_argv_with_out(command, model, data, model), *extra], capfd)  # out = the model
    run([*_argv_with_out(command, model, data, d), *extra], capfd)  # out contains model and data
    run([*_argv_with_out(command, model, data, d / "holder"), *extra], capfd)  # out contains the data


def test_force_replaces_only_what_the_same_command_wrote(case, capfd, world):
    d, run = case
    data = world / "data" / "eval.json"
    foreign = d / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    run(["similarity", world / "tiny", "--data", data, "--out", foreign, "--force"], capfd, "not written by")
    other = d / "other"
    save_tiny(other, TinyConfig(seed=1))  # lnprobe wrote it, but for `tiny`
    run(["gradvar", world / "tiny", "--data", data, "--out", other, "--force"], capfd, "lnprobe gradvar")
    run(["data", "synth", other, "--force"], capfd, "lnprobe data synth")
    run(["tiny", foreign, "--force"], capfd, "not written by")
    run(["data", "synth", foreign], capfd, "already exists")
    (d / "link").symlink_to(foreign)
    run(["tiny", d / "link", "--force"], capfd, "symbolic link")


def test_train_into_an_existing_directory_is_refused(case, capfd, world):
    d, run = case
    target = d / "existing"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    run(["train", "--model", world / "tiny", "--data", world / "data" / "eval.json", "--out", target], capfd)


def test_other_commands_bad_input(case, capfd, world):
    d, run = case
    data = world / "data" / "eval.json"
    run(["export", world / "tiny", "--peft", d / "p"], capfd, "not an lnprobe delta")
    run(["data", "verify", d / "none.yaml"], capfd)
    (d / "m.yaml").write_bytes(b"name: \xff\n")
    run(["data", "verify", d / "m.yaml"], capfd, "not UTF-8")
    run(["eval", world / "tiny", "--bench", "nope", "--data", world / "data", "--out", d / "o"], capfd)
    run(["eval", world / "tiny", "--bench", "pope", "--data", world / "data", "--out", d / "o"], capfd)
    run(
        ["sweep", "--model", world / "tiny", "--data", data, "--lrs", "nan", "--out", d / "s"], capfd, "--lrs"
    )
    run(
        ["sweep", "--model", world / "tiny", "--data", data, "--seeds", "x", "--out", d / "s"],
        capfd,
        "--seeds",
    )
    run(
        ["sweep", "--model", world / "tiny", "--data", data, "--regimes", "ln,bogus", "--out", d / "s"], capfd
    )
    run(["demo", "--finetune-steps", "0", "--out", d / "demo"], capfd, "--finetune-steps")
    run(["demo", "--centre-lr", "ln=fast", "--out", d / "demo"], capfd, "ln=fast")
    run(["demo", "--centre-lr", "ln=-0.1", "--out", d / "demo"], capfd, "--centre-lr")
    run(["study", "--regimes", "ln,lora", "--out", d / "study"], capfd, "'full'")
    run(["study", "--lr-factors", "1,x", "--out", d / "study"], capfd, "--lr-factors")
    run(["tiny", d / "t", "--layers", "0"], capfd, "--layers")
    run(["tiny", d / "t", "--lm", "gpt9"], capfd, "--lm")
    run(["params", "llava-7b", "--lora-rank", "0"], capfd, "--lora-rank")
    run(["similarity", world / "tiny", "--data", data, "--out", d / "o", "--bootstrap", "0"], capfd)
    run(["similarity", world / "tiny", "--data", data, "--out", d / "o", "--metric", "mse"], capfd)
    run(["lnshift", world / "tiny", "--data", data, "--out", d / "o"], capfd, "--base")
    run(["claims", "--base", world / "tiny", "--ln", world / "tiny", "--full", world / "tiny", "--data", data,
         "--out", d / "o", "--ln-run", d / "a", "--ln-run", d / "b"], capfd, "--ln-run")  # fmt: skip
    run(["assemble", "--llm", world / "tiny", "--vision", d / "none", "--out", d / "o"], capfd)
    run(["data", "subset", "--data", data, "--out", d / "s.json"], capfd, "--per-kind")
    run(["data", "fixture", "nope", "--out", d / "f"], capfd)
    run(["train", "--model", world / "tiny", "--data", data, "--regime", "bogus", "--out", d / "o"], capfd)
    run(["train", "--model", world / "tiny", "--data", data, "--resume", d / "none"], capfd)


# -- 3. property-based: malformed records and out-of-range values -------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
not_list = json_values.filter(lambda v: not isinstance(v, list))
not_str = json_values.filter(lambda v: not isinstance(v, str))
not_str_or_null = json_values.filter(lambda v: v is not None and not isinstance(v, str))


@st.composite
def broken_records(draw) -> object:
    """A record that is invalid by construction, in one of several ways."""
    kind = draw(st.sampled_from(["not_object", "conversations", "value", "image", "placeholders", "roles"]))
    if kind == "not_object":
        return draw(json_values.filter(lambda v: not isinstance(v, dict)))
    if kind == "conversations":
        return _record(conversations=draw(not_list | st.just([])))
    if kind == "value":
        return _record(
            conversations=[{"from": "human", "value": "<image>"}, {"from": "gpt", "value": draw(not_str)}]
        )
    if kind == "image":
        return _record(image=draw(not_str_or_null.filter(lambda v: v != 0 and v is not False and v != "")))
    if kind == "placeholders":
        n = draw(st.integers(min_value=2, max_value=4))
        text = draw(st.text(max_size=10).filter(lambda t: "<image>" not in t))
        return _record(
            conversations=[{"from": "human", "value": "<image>" * n + text}, {"from": "gpt", "value": "x"}]
        )
    roles = draw(st.lists(st.sampled_from(["human", "gpt", "system", "bot"]), min_size=1, max_size=4))
    if roles in (["human", "gpt"], ["human", "gpt", "human", "gpt"], ["system", "human", "gpt"]):
        roles = ["gpt", "human"]
    return _record(
        conversations=[{"from": r, "value": "<image>" if i == 0 else "x"} for i, r in enumerate(roles)]
    )


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(records=st.lists(broken_records(), min_size=1, max_size=3), good_first=st.booleans())
def test_generated_malformed_records(records, good_first, case, capfd, world):
    d, run = case
    items = ([_record()] if good_first else []) + records
    data = _data_file(d, world, json.dumps(items))
    run(["train", "--model", world / "tiny", "--data", data, "--out", d / "o"], capfd, str(data))
    data.unlink()


TRAIN_RANGES = {
    flag_of(n): (rng, integer)
    for n, rng, integer in _ranged_fields(
        __import__("lnprobe.train.config", fromlist=["TrainConfig"]).TrainConfig
    )
}


@st.composite
def out_of_range(draw) -> tuple[str, str]:
    flag = draw(st.sampled_from(sorted(TRAIN_RANGES)))
    rng, integer = TRAIN_RANGES[flag]
    if integer:
        value = draw(st.integers(min_value=-(10**6), max_value=10**12).filter(lambda v: not rng.ok(v)))
        return flag, str(value)
    value = draw(
        st.floats(allow_nan=True, allow_infinity=True).filter(
            lambda v: v != v or not rng.ok(v) or abs(v) == float("inf")
        )
    )
    return flag, repr(value)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(bad=out_of_range())
def test_generated_out_of_range_train_flags(bad, case, capfd, world):
    d, run = case
    flag, value = bad
    run(["train", "--model", world / "tiny", "--data", world / "data" / "eval.json", "--out", d / "o",
         f"{flag}={value}"], capfd, flag)  # fmt: skip


def test_there_are_at_least_100_distinct_cases():
    n_table = (
        len(RANGE_CASES)
        + len(DATA_CASES) * 4
        + len(CHECKPOINT_CASES) * 3
        + len(CONFIG_FILES)
        + len(INPUT_OVERLAP) * 2 * 3
    )
    assert n_table >= 100, n_table
