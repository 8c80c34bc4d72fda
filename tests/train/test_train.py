"""The training loop: loss, accumulation, schedule, precision, checkpoints, exact resume (also after
kill -9), divergence, callbacks and bad input."""

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from lnprobe.data.synth import SynthConfig, write_synth
from lnprobe.errors import InputError
from lnprobe.models import load, resolve_sites
from lnprobe.train import Callback, TrainConfig, Trainer, TrainingDiverged, train
from lnprobe.train.loss import loss_sum
from lnprobe.train.state import OPTIMIZER_FILE
from lnprobe.train.trainer import cosine_factor
from tests.conftest import image_batch


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return write_synth(tmp_path_factory.mktemp("synth") / "d", SynthConfig(n=40, seed=0))


def cfg(synth, out, **kw):
    base = dict(
        data=str(synth / "instruct.json"),
        out=str(out),
        regime="ln-simp",
        max_steps=6,
        batch_size=4,
        lr=1e-2,
        progress=False,
        seed=0,
    )
    return TrainConfig(**{**base, **kw})


def trained_tensors(result):
    return load_file(str(result.checkpoint / "delta.safetensors"))


def test_loss_sum_equals_transformers_loss(tiny):
    model, processor = tiny
    batch = image_batch(processor, n=3)
    batch["labels"][:, :12] = -100
    total, n = loss_sum(model, resolve_sites(model), batch, chunk=5)
    assert n == int((batch["labels"][:, 1:] != -100).sum())
    torch.testing.assert_close(total / n, model(**batch).loss)


def test_cosine_schedule():
    total, warmup = 100, 3
    assert [cosine_factor(s, total, warmup) for s in range(3)] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert cosine_factor(3 + 97 // 2, total, warmup) == pytest.approx(0.5 * (1 + math.cos(math.pi * 48 / 97)))
    assert cosine_factor(99, total, warmup) < 0.01


def test_training_reduces_loss_and_writes_a_loadable_checkpoint(synth, tmp_path):
    result = train(cfg(synth, tmp_path / "r", regime="ln", max_steps=12))
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert rows[-1]["loss"] < rows[0]["loss"]
    loaded = load(result.checkpoint)
    assert loaded.kind == "delta" and loaded.regime == "ln"
    assert json.loads((tmp_path / "r" / "lnprobe_config.json").read_text())["config"]["regime"] == "ln"


def test_accumulation_equals_a_bigger_batch(synth, tmp_path):
    """4 records, one step: batch 4 x accum 1 == batch 2 x accum 2 (normalised by the step's tokens)."""
    records = json.loads((synth / "instruct.json").read_text())[:4]
    (synth / "four.json").write_text(json.dumps(records))
    common = dict(data=str(synth / "four.json"), max_steps=1, regime="ln")
    a = trained_tensors(train(cfg(synth, tmp_path / "a", batch_size=4, grad_accum=1, **common)))
    b = trained_tensors(train(cfg(synth, tmp_path / "b", batch_size=2, grad_accum=2, **common)))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)


def test_group_learning_rates_and_fp32_masters(synth, tmp_path):
    trainer = Trainer(
        cfg(synth, tmp_path / "r", regime="ln", lr=1e-3, lr_norm=5e-2, lr_embed=1e-4, dtype="bf16")
    )
    by_lr = {g["base_lr"]: {id(p) for p in g["params"]} for g in trainer.optimizer.param_groups}
    params = dict(trainer.model.named_parameters())
    assert id(params["model.language_model.norm.weight"]) in by_lr[5e-2]
    assert id(params["lm_head.weight"]) in by_lr[1e-4]
    assert id(params["model.multi_modal_projector.linear_1.weight"]) in by_lr[1e-3]
    assert all(params[n].dtype == torch.float32 for n in trainer.trainable)
    assert params["model.language_model.layers.0.mlp.up_proj.weight"].dtype == torch.bfloat16
    assert math.isfinite(trainer.train().final_loss)


class Interrupt(Callback):
    def __init__(self, at):
        self.at = at

    def on_step_end(self, trainer, step, metrics):
        if step == self.at:
            raise KeyboardInterrupt


@pytest.mark.parametrize("regime", ["ln-simp", "lora", "full"])
def test_resume_is_bitwise_exact(synth, tmp_path, regime):
    kw = dict(regime=regime, save_every=2, lora_rank=4, grad_accum=2, batch_size=2)
    straight = train(cfg(synth, tmp_path / "straight", **kw))
    with pytest.raises(KeyboardInterrupt):
        train(cfg(synth, tmp_path / "cut", **kw), [Interrupt(at=5)])
    resumed = train(cfg(synth, tmp_path / "cut", resume=str(tmp_path / "cut"), **kw))
    assert resumed.steps == straight.steps == 6
    if regime == "full":
        a, b = load(straight.checkpoint).model.state_dict(), load(resumed.checkpoint).model.state_dict()
    else:
        a, b = trained_tensors(straight), trained_tensors(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    metrics = [json.loads(x)["step"] for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert metrics == list(range(1, 7))  # replayed steps are not logged twice


KILL_SCRIPT = """
import os, signal, sys
import lnprobe.train.state as state
from lnprobe.train import Callback, TrainConfig, train
point, regime, data, out = sys.argv[1:5]
if point == "during_save":  # die inside the step-4 checkpoint write, after its model part is on disk
    write = state._save_model_part
    def dying(tmp, step, trainer):
        write(tmp, step, trainer)
        if step == 4:
            os.kill(os.getpid(), signal.SIGKILL)
    state._save_model_part = dying
class Kill(Callback):
    def on_step_end(self, trainer, step, metrics):
        if point == "after_checkpoint" and step == 4:
            os.kill(os.getpid(), signal.SIGKILL)
train(TrainConfig(data=data, out=out, regime=regime, max_steps=6, batch_size=2, grad_accum=2, lr=1e-2,
                  lora_rank=4, progress=False, save_every=2), [Kill()])
"""


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after_checkpoint", "during_save"])
@pytest.mark.parametrize("regime", ["ln-simp", "lora", "full"])
def test_resume_after_kill_9(synth, tmp_path, regime, point):
    """kill -9 right after a checkpoint, or in the middle of writing one: the resumed run takes over the
    dead writer's lock, removes the half-written checkpoint, and ends bit for bit where an uninterrupted
    run does (the in-process interruption at step 5 is test_resume_is_bitwise_exact)."""
    out = tmp_path / "killed"
    argv = [sys.executable, "-c", KILL_SCRIPT, point, regime, str(synth / "instruct.json"), str(out)]
    done = subprocess.run(argv, capture_output=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    assert (out / ".lnprobe.lock").is_file()  # the dead writer's
    expected_latest = "step-000004" if point == "after_checkpoint" else "step-000002"
    assert (out / "latest").read_text().strip() == expected_latest
    leftovers = list((out / "checkpoints").glob(".step-*"))
    assert bool(leftovers) == (point == "during_save")
    kw = dict(regime=regime, save_every=2, lora_rank=4, grad_accum=2, batch_size=2)
    with pytest.warns(UserWarning, match="stale lock"):
        resumed = train(cfg(synth, "runs/train", resume=str(out), **kw))  # --resume alone names the run
    assert not list((out / "checkpoints").glob(".step-*")) and not (out / ".lnprobe.lock").exists()
    straight = train(cfg(synth, tmp_path / "straight", **kw))
    if regime == "full":
        a, b = load(straight.checkpoint).model.state_dict(), load(resumed.checkpoint).model.state_dict()
    else:
        a, b = trained_tensors(straight), trained_tensors(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_second_writer_is_refused(synth, tmp_path):
    """While one process holds a run, another `train --resume` on it exits 2 naming the holder; a fresh
    run cannot be started into it either."""
    first = train(cfg(synth, tmp_path / "r", max_steps=2))
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (first.run / ".lnprobe.lock").write_text(
            json.dumps({"pid": holder.pid, "host": socket.gethostname()})
        )
        with pytest.raises(InputError, match=f"in use by process {holder.pid}"):
            train(cfg(synth, first.run, max_steps=4, resume=str(first.run)))
    finally:
        holder.kill()
        holder.wait()
    with pytest.warns(UserWarning, match="stale lock"):  # the holder is gone now
        assert train(cfg(synth, first.run, max_steps=4, resume=str(first.run))).steps == 4


def test_two_concurrent_fresh_runs_into_one_out(synth, tmp_path):
    """Two `lnprobe train` started at once with one --out: exactly one exits 0, the other exits 2 and
    the run holds one seed's config and checkpoints."""
    out = tmp_path / "shared"
    common = [sys.executable, "-m", "lnprobe.cli", "train", "--data", str(synth / "instruct.json")]
    common += ["--out", str(out), "--regime", "ln-simp", "--max-steps", "2", "--no-progress"]
    procs = [
        subprocess.Popen([*common, "--seed", str(s)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for s in (0, 1)
    ]
    codes = [p.wait(timeout=300) for p in procs]
    errs = [p.stderr.read().decode() for p in procs]
    assert sorted(codes) == [0, 2], errs
    loser = errs[codes.index(2)].strip().splitlines()
    assert len(loser) == 1 and loser[0].startswith("lnprobe: error:"), loser
    seed = codes.index(0)
    config = json.loads((out / "lnprobe_config.json").read_text())["config"]
    state = json.loads((out / "checkpoints" / "step-000002" / "trainer_state.json").read_text())
    assert config["seed"] == state["config"]["seed"] == seed
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared"]  # no staging left by the loser


def test_python_random_is_seeded(synth, tmp_path):
    a = train(cfg(synth, tmp_path / "a", max_steps=1))
    b = train(cfg(synth, tmp_path / "b", max_steps=1))
    state = [json.loads((r.checkpoint / "trainer_state.json").read_text())["python_rng"] for r in (a, b)]
    assert state[0] == state[1]
    c = train(cfg(synth, tmp_path / "c", max_steps=1, seed=1))
    assert json.loads((c.checkpoint / "trainer_state.json").read_text())["python_rng"] != state[0]


def test_failed_set_up_leaves_nothing(synth, tmp_path):
    """A broken image is found before training: no run directory, no parent created for it, no staging."""
    work = tmp_path / "w"
    shutil.copytree(synth, work)
    broken = json.loads((work / "instruct.json").read_text())[-1]["image"]
    (work / broken).write_bytes(b"not a png")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(InputError, match=f"{broken}: unreadable image"):
        train(cfg(work, tmp_path / "new" / "deep" / "run"))
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


class Poison(Callback):
    def on_step_end(self, trainer, step, metrics):
        if step == 2:
            with torch.no_grad():
                dict(trainer.model.named_parameters())["model.language_model.norm.weight"].fill_(float("nan"))


def test_nan_loss_stops_and_keeps_the_last_checkpoint(synth, tmp_path):
    with pytest.raises(
        TrainingDiverged,
        match="loss became nan at step 3; .* keeps what was written, its last good checkpoint is .*step-0+2",
    ):
        train(cfg(synth, tmp_path / "r", save_every=1), [Poison()])
    tensors = load_file(str(tmp_path / "r" / "checkpoints" / "step-000002" / "delta.safetensors"))
    assert all(torch.isfinite(t).all() for t in tensors.values())
    assert not (tmp_path / "r" / "checkpoints" / "step-000003").exists()


class Recorder(Callback):
    wants_micro_grads = True

    def __init__(self):
        self.micro, self.summed = [], []

    def on_micro_batch(self, trainer, step, micro, batch):
        if step == 0:
            self.micro.append(
                {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
            )

    def on_before_optimizer_step(self, trainer, step):
        if step == 0:
            self.summed.append(
                {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
            )


def test_no_final_optimizer_leaves_the_moments_out_and_refuses_to_extend(synth, tmp_path):
    """The default last checkpoint keeps the AdamW moments and extends; --no-final-optimizer has the same
    weights without them (a checkpoint before the last keeps them) and refuses to extend, exit 2."""
    kept = train(cfg(synth, tmp_path / "kept", max_steps=2))
    lean = train(cfg(synth, tmp_path / "lean", max_steps=2, save_every=1, final_optimizer=False))
    assert (kept.checkpoint / OPTIMIZER_FILE).is_file() and not (lean.checkpoint / OPTIMIZER_FILE).is_file()
    assert (lean.checkpoint.parent / "step-000001" / OPTIMIZER_FILE).is_file()
    a, b = trained_tensors(kept), trained_tensors(lean)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert train(cfg(synth, tmp_path / "kept", max_steps=3, resume=str(tmp_path / "kept"))).steps == 3
    with pytest.raises(InputError, match=r"no optimizer state \(its run finished with --no-final-optimizer"):
        train(
            cfg(
                synth,
                tmp_path / "lean",
                max_steps=3,
                save_every=1,
                final_optimizer=False,
                resume=str(tmp_path / "lean"),
            )
        )
    with pytest.raises(InputError, match="--no-final-optimizer: not available with --shard fsdp"):
        cfg(synth, tmp_path / "s", shard="fsdp", final_optimizer=False)


def test_callback_sees_each_micro_batch_gradient(synth, tmp_path):
    rec = Recorder()
    train(cfg(synth, tmp_path / "r", grad_accum=3, batch_size=2, max_steps=1, max_grad_norm=0.0), [rec])
    assert len(rec.micro) == 3 and len(rec.summed) == 1
    for name, total in rec.summed[0].items():
        torch.testing.assert_close(sum(m[name] for m in rec.micro), total)
        assert not torch.equal(rec.micro[0][name], total)


def test_bad_run_dirs_and_configs(synth, tmp_path):
    train(cfg(synth, tmp_path / "r", max_steps=2))
    with pytest.raises(InputError, match="already holds a run"):
        train(cfg(synth, tmp_path / "r", max_steps=2))
    with pytest.raises(InputError, match=r"--resume with a different config \(lr differ\)"):
        train(cfg(synth, tmp_path / "r", max_steps=4, lr=0.5, resume=str(tmp_path / "r")))
    with pytest.raises(InputError, match="no checkpoint to resume from"):
        train(cfg(synth, tmp_path / "empty", resume=str(tmp_path / "empty")))
    with pytest.raises(InputError, match="name different run directories"):
        train(cfg(synth, tmp_path / "x", resume=str(tmp_path / "r")))
    with pytest.raises(InputError, match="unknown template 'alpaca'"):
        train(cfg(synth, tmp_path / "t", template="alpaca"))
    with pytest.raises(InputError, match="--batch-size 0: must be >= 1"):
        cfg(synth, tmp_path / "b", batch_size=0)
    with pytest.raises(InputError, match="fewer than one optimizer step"):
        train(cfg(synth, tmp_path / "s", batch_size=40, grad_accum=2))
    assert not (tmp_path / "t" / "checkpoints").exists()


def test_models_from_a_checkpoint_dir_train_too(synth, tmp_path, tiny_dir):
    result = train(cfg(synth, tmp_path / "r", model=tiny_dir, max_steps=2))
    assert load(result.checkpoint).base == str(os.path.realpath(tiny_dir))


@pytest.mark.slow
def test_two_process_ddp_equals_one_process(synth, tmp_path):
    """torchrun, 2 CPU processes (gloo), batch 2 each == 1 process with 2 accumulated batches of 2."""
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    args = [
        "--data",
        str(synth / "instruct.json"),
        "--regime",
        "ln",
        "--max-steps",
        "3",
        "--batch-size",
        "2",
        "--lr",
        "0.01",
        "--no-progress",
        "--save-every",
        "0",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            torchrun,
            "--nproc_per_node",
            "2",
            "--master_port",
            "29517",
            "-m",
            "lnprobe.cli",
            "train",
            "--out",
            str(tmp_path / "ddp"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    single = train(cfg(synth, tmp_path / "one", regime="ln", max_steps=3, batch_size=2, grad_accum=2))
    ddp = load_file(str(tmp_path / "ddp" / "checkpoints" / "step-000003" / "delta.safetensors"))
    one = trained_tensors(single)
    assert ddp.keys() == one.keys()
    for name in one:
        torch.testing.assert_close(ddp[name], one[name], rtol=1e-5, atol=1e-6)
    state = json.loads((tmp_path / "ddp" / "checkpoints" / "step-000003" / "trainer_state.json").read_text())
    assert state["processes"] == 2


def test_eval_loss_matches_an_independent_computation(synth, tmp_path):
    from lnprobe.data.llava import LlavaDataset, collate

    result = train(cfg(synth, tmp_path / "r", eval_data=str(synth / "eval.json"), eval_every=2, max_steps=4))
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], "eval_loss" in r) for r in rows] == [
        (0, True),
        (1, False),
        (2, True),
        (3, False),
        (4, True),
    ]
    evals = [r["eval_loss"] for r in rows if "eval_loss" in r]
    assert result.eval_loss == evals[-1] and result.best_eval_loss == min(evals[1:])  # step 0: the base
    assert evals[-1] < evals[0]  # training on the task lowers the held-out loss
    loaded = load(result.checkpoint)
    data = LlavaDataset(synth / "eval.json", loaded.processor)
    tok = loaded.processor.tokenizer
    total = count = 0.0
    with torch.no_grad():
        for i in range(len(data)):  # one record at a time, transformers' own loss
            batch = collate(
                [data[i]], tok.pad_token_id, data.encoder.image_token_id, data.encoder.n_image_tokens
            )
            n = int((batch["labels"][:, 1:] != -100).sum())
            total, count = total + loaded.model(**batch).loss.item() * n, count + n
    assert result.eval_loss == pytest.approx(total / count, rel=1e-5)


def test_metrics_go_to_tensorboard_when_installed(synth, tmp_path, monkeypatch):
    logged = []

    class FakeWriter:
        def add_scalar(self, tag, value, step):
            logged.append((tag, step))

        def flush(self):
            pass

    monkeypatch.setattr("lnprobe.train.trainer.tensorboard_writer", lambda path, start_step: FakeWriter())
    train(cfg(synth, tmp_path / "r", max_steps=2))
    assert ("train/loss", 1) in logged and ("train/lr", 2) in logged


def test_training_writes_tensorboard_logs_under_the_run(synth, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(cfg(synth, tmp_path / "r", max_steps=2, eval_data=str(synth / "eval.json")))
    events = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "train/loss" in tags and "train/eval_loss" in tags
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2]


def test_a_resumed_run_replaces_the_interrupted_runs_tensorboard_steps(synth, tmp_path):
    """Cut at step 5 with the last checkpoint at step 4, then resumed: steps 5 and 6 are logged once each,
    with the resumed run's values (those of metrics.jsonl), not the interrupted run's beside them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "cut"
    kw = dict(save_every=4, max_steps=6, lr=1e-2)

    class Planted(Callback):  # a step-5 loss of the interrupted run's that cannot pass for the resumed one's
        def on_step_end(self, trainer, step, metrics):
            if step == 5:
                trainer.tensorboard.add_scalar("train/loss", -1.0, 5)
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg(synth, run, **kw), [Planted()])
    train(cfg(synth, run, resume=str(run), **kw))
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    logged = [(e.step, e.value) for e in events.Scalars("train/loss")]
    saved = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [step for step, _ in logged] == list(range(1, 7))
    assert [value for _, value in logged] == pytest.approx([m["loss"] for m in saved])


def test_data_loading_workers_change_nothing(synth, tmp_path):
    a = trained_tensors(train(cfg(synth, tmp_path / "a", regime="lora", lora_rank=4, max_steps=3)))
    b = trained_tensors(
        train(cfg(synth, tmp_path / "b", regime="lora", lora_rank=4, max_steps=3, num_workers=2))
    )
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("regime", ["ln-simp", "full"])
def test_frozen_vision_tower_builds_no_graph(synth, tmp_path, regime):
    """The vision tower is frozen in every regime, so its forward records nothing for backward."""
    seen = []

    class Watch(Callback):
        def on_train_begin(self, trainer):
            tower = trainer.model.get_submodule(trainer.sites.vision_tower)
            tower.register_forward_hook(lambda m, i, out: seen.append(out.last_hidden_state.requires_grad))

    train(cfg(synth, tmp_path / "r", regime=regime, max_steps=1), [Watch()])
    assert seen and not any(seen)


def test_resuming_a_finished_run_returns_its_result(synth, tmp_path):
    first = train(cfg(synth, tmp_path / "r", eval_data=str(synth / "eval.json"), max_steps=2))
    lines = (tmp_path / "r" / "metrics.jsonl").read_text()
    again = train(
        cfg(
            synth, tmp_path / "r", eval_data=str(synth / "eval.json"), max_steps=2, resume=str(tmp_path / "r")
        )
    )
    assert again == first and (tmp_path / "r" / "metrics.jsonl").read_text() == lines
    (tmp_path / "r" / "result.json").unlink()  # an interrupted re-run removed it: rebuilt from the metrics
    assert (
        train(
            cfg(
                synth,
                tmp_path / "r",
                eval_data=str(synth / "eval.json"),
                max_steps=2,
                resume=str(tmp_path / "r"),
            )
        )
        == first
    )


def test_resume_drops_a_log_line_the_kill_cut_short(tmp_path):
    """A kill -9 during a metrics write leaves half a JSON line last: resuming drops it with the steps
    after the checkpoint; a line that is not JSON before the last is an error naming the file and line."""
    from lnprobe.train.logs import trim_metrics

    path = tmp_path / "metrics.jsonl"
    rows = [json.dumps({"step": s, "loss": 1.0 / s}) for s in (1, 2, 3)]
    path.write_text("\n".join(rows) + '\n{"step": 4, "lo')
    trim_metrics(path, 2)
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [1, 2]
    path.write_text(rows[0] + "\nnot json\n" + rows[1] + "\n")
    with pytest.raises(InputError, match=r"jsonl: line 2 is not JSON; the run cannot resume its log$"):
        trim_metrics(path, 2)
    assert path.read_text().count("\n") == 3  # left as it was
