"""`lnprobe train --shard fsdp` (PyTorch FSDP2, 2 CPU processes on gloo): equal to one unsharded process on
the same global batches for ln-simp, ln, lora and full; sharded checkpoints (safetensors, nothing pickled)
resume bit for bit, also onto one process; the exported weights load with `lnprobe.models.load` and give the
unsharded run's logits. The large-model start (weights loaded by process 0 only, the other built on the
meta device) trains bit for bit like every process loading them, rebuilds the non-persistent buffers, and
makes process 1 hold only its shards and one whole tensor at a time (counted where the start makes them).

One `torchrun` launch (tests/train/shard_worker.py) runs every 2-process case; the one-process references
run here. Tolerance: AdamW at lr 1e-2 for 3 steps, 2 processes vs 1 differ by at most 5e-7 (measured:
ln-simp and lora 0, ln 4.8e-7 in the word embeddings, full 1.2e-7); the tests allow 2e-6.
"""

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from lnprobe.cli.core import main
from lnprobe.data.synth import SynthConfig, write_synth
from lnprobe.errors import InputError
from lnprobe.models import load, save_tiny
from lnprobe.models.load import build_from_config, resolve_config
from lnprobe.train import TrainConfig, train
from tests.conftest import image_batch
from tests.train.shard_worker import WIDE

ATOL = 2e-6
REGIMES = ("ln-simp", "ln", "lora", "full")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return write_synth(tmp_path_factory.mktemp("synth") / "d", SynthConfig(n=40, seed=0))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sharded(synth, tmp_path_factory):
    """The 2-process runs of tests/train/shard_worker.py (its docstring lists them)."""
    out = tmp_path_factory.mktemp("sharded") / "out"
    wide = out.parent / "wide-base"
    save_tiny(wide, WIDE)
    data = [str(synth / "instruct.json"), str(synth / "eval.json")]
    killed = launch(["kill", str(out), *data])
    assert killed.returncode != 0 and "SIGKILL" in killed.stderr, killed.stderr[-3000:]
    done = launch([str(out), *data, str(wide)])
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def launch(args: list[str]) -> subprocess.CompletedProcess:
    """`torchrun --nproc-per-node 2 -m tests.train.shard_worker ARGS`."""
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    command = [torchrun, "--nproc-per-node", "2", "--master-port", str(free_port())]
    return subprocess.run(
        [*command, "-m", "tests.train.shard_worker", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        cwd=Path(__file__).parents[2],
    )


def one_config(synth, out, **kw) -> TrainConfig:
    """The sharded runs' settings in one process: 2 accumulated micro-batches = 2 processes' batches."""
    base = dict(
        data=str(synth / "instruct.json"),
        out=str(out),
        regime="ln",
        max_steps=3,
        batch_size=2,
        grad_accum=2,
        lr=1e-2,
        lora_dropout=0.0,
        progress=False,
    )
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def one_process(synth, tmp_path_factory):
    """Unsharded one-process runs, by regime (made on first use)."""
    runs: dict[str, Path] = {}

    def get(regime: str) -> Path:
        if regime not in runs:
            out = tmp_path_factory.mktemp("one") / regime
            runs[regime] = train(one_config(synth, out, regime=regime)).checkpoint
        return runs[regime]

    return get


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    """The trained weights lnprobe exports: a delta's tensors or a full checkpoint's model file."""
    delta = ckpt / "delta.safetensors"
    return load_file(str(delta if delta.is_file() else ckpt / "model.safetensors"))


def moved(run: Path, regime: str, trained: dict) -> float:
    """The largest change training made to a weight (LoRA's B matrices start at zero)."""
    if regime == "lora":
        return max(float(v.abs().max()) for k, v in trained.items() if "lora_B" in k)
    if regime == "full":
        start = load_file(str(run / "base" / "model.safetensors"))
    else:
        start = {n: p.detach() for n, p in load(run / "base").model.named_parameters()}
    return max(float((trained[k] - start[k]).abs().max()) for k in trained)


def metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def final(run: Path, step: int = 3) -> Path:
    return run / "checkpoints" / f"step-{step:06d}"


@pytest.mark.parametrize("regime", REGIMES)
def test_two_sharded_processes_equal_one_process(sharded, one_process, regime):
    ckpt = final(sharded / regime)
    mine, ref = weights(ckpt), weights(one_process(regime))
    assert mine.keys() == ref.keys()
    for name in ref:
        torch.testing.assert_close(mine[name], ref[name], rtol=0, atol=ATOL, msg=name)
    assert moved(sharded / regime, regime, mine) > 500 * ATOL  # far above the tolerance
    rows = [metrics(run) for run in (sharded / regime, one_process(regime).parents[1])]
    assert [r["target_tokens"] for r in rows[0]] == [r["target_tokens"] for r in rows[1]]  # same batches
    for a, b in zip(*rows, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5)
    assert (rows[1][0]["grad_norm"] > 1) == (regime != "ln-simp")  # clipping at 1.0 acted (ln-simp: below)
    assert json.loads((ckpt / "trainer_state.json").read_text())["processes"] == 2
    assert len(list((ckpt / "shards").glob("*.safetensors"))) == 2  # one file per process


def test_resume_continues_bit_for_bit(sharded):
    """Cut back to step 2 and resumed on 2 processes == the uninterrupted run, shards and export alike."""
    resumed, whole = final(sharded / "resume", 4), final(sharded / "uninterrupted", 4)
    files = sorted(p.relative_to(whole) for p in whole.rglob("*.safetensors"))
    assert sorted(p.relative_to(resumed) for p in resumed.rglob("*.safetensors")) == files
    assert len(files) == 4  # delta, rng, 2 shards
    for rel in files:
        a, b = load_file(str(resumed / rel)), load_file(str(whole / rel))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), rel
    rows = [(sharded / r / "metrics.jsonl").read_text().splitlines() for r in ("resume", "uninterrupted")]
    trained = [[json.loads(x) for x in r if "loss" in json.loads(x)] for r in rows]  # step 0: evaluation only
    losses = [[(x["step"], x["loss"]) for x in r] for r in trained]
    assert losses[0] == losses[1] and [s for s, _ in losses[0]] == [1, 2, 3, 4]
    assert "eval_loss" in json.loads(rows[0][-1])  # evaluation ran sharded
    assert not list((sharded / "resume" / "checkpoints").glob(".step-*"))  # a killed write's remains removed


def test_kill_9_then_resume_is_bit_for_bit(sharded):
    """Every process SIGKILLed after step 3 (a real kill -9 under torchrun): the run's latest checkpoint is
    step 2 and its dead writer's lock is left; `--resume` takes over and ends bit for bit where the
    uninterrupted run does."""
    left = json.loads((sharded / "killed-before.json").read_text())
    assert left == {"latest": "step-000002", "lock": True}
    resumed, whole = final(sharded / "killed", 4), final(sharded / "uninterrupted", 4)
    files = sorted(p.relative_to(whole) for p in whole.rglob("*.safetensors"))
    assert sorted(p.relative_to(resumed) for p in resumed.rglob("*.safetensors")) == files
    for rel in files:
        a, b = load_file(str(resumed / rel)), load_file(str(whole / rel))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), rel
    assert not (sharded / "killed" / ".lnprobe.lock").exists()


def test_sweep_trains_each_run_sharded(sharded):
    """`lnprobe sweep --shard fsdp` under torchrun: one table of both rates, its lr 0.01 run bit for bit the
    `train --shard fsdp` run with the same settings, its lr 0.02 run another."""
    rows = list(csv.DictReader((sharded / "sweep" / "sweep.csv").open()))
    assert [(r["regime"], float(r["lr"]), int(r["steps"])) for r in rows] == [
        ("ln-simp", 0.01, 3),
        ("ln-simp", 0.02, 3),
    ]
    ref = weights(final(sharded / "ln-simp"))
    same, other = (weights(final(sharded / "sweep" / "ln-simp" / f"lr{lr}-seed0")) for lr in ("0.01", "0.02"))
    assert all(torch.equal(same[k], ref[k]) for k in ref)
    assert not all(torch.equal(other[k], ref[k]) for k in ref)


def test_two_process_checkpoint_resumes_on_one_process(sharded, synth, tmp_path):
    run = sharded / "to-one"
    before = sorted(str(p) for p in run.rglob("*"))
    with pytest.raises(InputError, match=r"needs --grad-accum 2 \(the same global batch: 2 micro-batches"):
        train(one_config(synth, run, resume=str(run), max_steps=4, grad_accum=1, shard="fsdp"))
    assert sorted(str(p) for p in run.rglob("*")) == before  # refused before anything was written
    result = train(one_config(synth, run, resume=str(run), max_steps=4, shard="fsdp"))
    assert json.loads((result.checkpoint / "trainer_state.json").read_text())["processes"] == 1
    assert not torch.distributed.is_initialized()  # the one-process group ended with the run
    mine, ref = weights(result.checkpoint), weights(final(sharded / "uninterrupted", 4))
    for name in ref:
        torch.testing.assert_close(mine[name], ref[name], rtol=0, atol=ATOL, msg=name)


def test_sweep_with_shard_in_one_process(sharded, synth, tmp_path):
    """Without torchrun, `sweep --shard fsdp` trains each run as a one-process sharded run (its own process
    group, ended with it): with 2 accumulated micro-batches it equals the 2-process sweep's run."""
    argv = ["sweep", "--shard", "fsdp", "--data", str(synth / "instruct.json"), "--out", str(tmp_path / "sw"),
            "--regimes", "ln-simp", "--lrs", "0.01", "--max-steps", "3", "--batch-size", "2", "--grad-accum",
            "2", "--lora-dropout", "0", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert not torch.distributed.is_initialized()
    mine = weights(final(tmp_path / "sw" / "ln-simp" / "lr0.01-seed0"))
    ref = weights(final(sharded / "sweep" / "ln-simp" / "lr0.01-seed0"))
    assert mine.keys() == ref.keys()
    for name in ref:
        torch.testing.assert_close(mine[name], ref[name], rtol=0, atol=ATOL, msg=name)


@pytest.mark.parametrize("regime", ["ln", "full"])
def test_export_loads_and_gives_the_unsharded_logits(sharded, one_process, regime):
    mine, ref = load(final(sharded / regime)), load(one_process(regime))
    assert (mine.kind, mine.regime) == (ref.kind, ref.regime)
    batch = image_batch(ref.processor, n=2)
    with torch.no_grad():
        a, b = mine.model(**batch).logits, ref.model(**batch).logits
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("regime", ["ln", "full"])
def test_large_model_start_equals_every_process_loading(sharded, regime):
    """Weights on the main process only, the others built on meta: the same 3 steps, bit for bit."""
    mine, ref = weights(final(sharded / regime)), weights(final(sharded / f"{regime}-load"))
    assert mine.keys() == ref.keys()
    assert all(torch.equal(mine[k], ref[k]) for k in ref)
    rows = [metrics(sharded / r) for r in (regime, f"{regime}-load")]
    assert [(r["loss"], r["grad_norm"]) for r in rows[0]] == [(r["loss"], r["grad_norm"]) for r in rows[1]]


def test_large_model_start_rebuilds_the_non_persistent_buffers(sharded):
    """Every buffer outside the state dict (found on an eagerly built model) is on both processes, equal to
    the eager model's."""
    eager = build_from_config(resolve_config(str(sharded.parent / "wide-base")), "cpu")
    kept = eager.state_dict().keys()
    expected = {n: b for n, b in eager.named_buffers() if n not in kept}
    assert {n.rpartition(".")[2] for n in expected} == {"inv_freq", "original_inv_freq", "position_ids"}
    for rank in (0, 1):
        got = load_file(str(sharded / "memory" / f"buffers-r{rank}.safetensors"))
        assert got.keys() == expected.keys()
        for name, buffer in expected.items():
            assert torch.equal(got[name], buffer), (rank, name)


def test_large_model_start_holds_one_copy_of_the_weights(sharded):
    """Counted, not measured (the resident-memory peak is benchmarks/shard_start.py's): process 0 loads the
    weights once and holds them whole until its shards are filled; process 1 never loads them, holds no
    weight before its shards are allocated, and makes one whole tensor at a time while they are filled
    (never two alive at once, none larger than the largest weight). Each holds half of the parameters
    afterwards."""
    main, other = (json.loads((sharded / "memory" / f"setup-r{r}.json").read_text()) for r in (0, 1))
    with safe_open(str(sharded.parent / "wide-base" / "model.safetensors"), "pt") as f:
        sizes = [f.get_slice(k).get_shape() for k in f.keys()]  # noqa: SIM118 (safe_open has no __iter__)
    weights = sum(4 * torch.Size(s).numel() for s in sizes)  # fp32
    largest = max(4 * torch.Size(s).numel() for s in sizes)
    assert (main["loads"], main["meta_builds"], other["loads"], other["meta_builds"]) == (1, 0, 0, 1)
    assert other["held_before"] == 0 and other["full_bytes"] == 0
    assert main["full_bytes"] >= weights  # the one loaded copy (and the buffers the state dict holds)
    assert other["whole_max_alive"] == 1 and other["whole_max_bytes"] == largest
    assert other["wholes"] == main["wholes"] and other["whole_bytes"] == main["whole_bytes"]
    assert other["whole_bytes"] >= weights  # every weight passed through, one at a time
    params = main["shard_bytes"] + other["shard_bytes"]
    assert weights <= params <= main["full_bytes"]
    assert abs(main["shard_bytes"] - other["shard_bytes"]) <= 0.01 * params  # halves (dim 0 split)


def test_checkpoints_hold_nothing_pickled(sharded):
    """Every file is JSON, text or safetensors (which opens with safe_open); no DCP `.metadata` pickle."""
    files = [p for p in sharded.rglob("*") if p.is_file() and "checkpoints" in p.parts]
    assert files and not [p for p in files if p.name == ".metadata"]
    for path in files:
        head = path.read_bytes()[:2]
        assert head[:1] != b"\x80" and head != b"PK", path  # pickle protocol 2+ / torch.save's zip
        if path.suffix == ".safetensors":
            with safe_open(str(path), "pt") as f:
                assert list(f.keys())
        elif path.suffix == ".json":
            json.loads(path.read_text())


def test_bad_input(synth, one_process, tmp_path, capsys):
    assert main(["train", "--data", str(synth / "instruct.json"), "--out", str(tmp_path / "g"),
                 "--shard", "fsdp", "--gradvar-every", "2"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert "--gradvar-every" in err and "--shard fsdp" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "g").exists()
    assert main(["sweep", "--data", str(synth / "instruct.json"), "--out", str(tmp_path / "s"),
                 "--shard", "fsdp", "--parallel", "2", "--regimes", "ln", "--lrs", "0.01"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert "--parallel" in err and "--shard fsdp" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "s").exists()
    run = one_process("ln").parents[1]
    with pytest.raises(InputError, match=r"different config \(shard differ\)"):
        train(one_config(synth, run, resume=str(run), shard="fsdp"))


def test_python_dash_m_lnprobe_runs_the_command_line():
    done = subprocess.run(
        [sys.executable, "-m", "lnprobe", "train", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "--shard" in done.stdout


def test_deepspeed_launches_are_refused_naming_shard_fsdp(monkeypatch):
    import accelerate
    from accelerate.utils import DistributedType

    from lnprobe.train.setup import make_accelerator

    class DeepSpeedLaunch:  # what `accelerate launch --use_deepspeed` gives
        def __init__(self, **_):
            self.distributed_type = DistributedType.DEEPSPEED

    monkeypatch.setattr(accelerate, "Accelerator", DeepSpeedLaunch)
    with pytest.raises(InputError, match=r"launch mode DEEPSPEED is not supported .*--shard fsdp\)$"):
        make_accelerator(TrainConfig(data="x"))
