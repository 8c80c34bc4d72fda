"""`lnprobe sweep`: the grid, skipping finished runs, resuming interrupted ones, parallel processes, and
the best learning rate per regime."""

import json
import statistics

import pytest

from lnprobe.data.synth import SynthConfig, write_synth
from lnprobe.errors import InputError
from lnprobe.train import Callback, TrainConfig, train
from lnprobe.train.sweep import best_lrs, claim_out, plan, run_sweep


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return write_synth(tmp_path_factory.mktemp("sweep") / "d", SynthConfig(n=30, seed=2))


def base(synth, out):
    return TrainConfig(
        data=str(synth / "instruct.json"),
        eval_data=str(synth / "eval.json"),
        out=str(out),
        max_steps=2,
        batch_size=4,
        progress=False,
    )


class StopAfterOne(Callback):
    def on_step_end(self, trainer, step, metrics):
        raise KeyboardInterrupt


def test_sweep_grid_skip_and_resume(synth, tmp_path):
    out = tmp_path / "sweep"
    cfg = base(synth, out)
    runs = plan(cfg, out, ["ln-simp", "ln"], [1e-2, 1e-3], [0])
    assert [(r.regime, r.lr) for r in runs] == [
        ("ln-simp", 1e-2),
        ("ln-simp", 1e-3),
        ("ln", 1e-2),
        ("ln", 1e-3),
    ]
    claim_out(cfg, out)  # an earlier sweep whose first run was interrupted after its first (saved) step
    with pytest.raises(KeyboardInterrupt):
        train(runs[0].config(cfg).replace(save_every=1), [StopAfterOne()])
    rows = run_sweep(cfg, out, runs)
    assert len(rows) == 4 and all(r["steps"] == 2 for r in rows)
    metrics = (runs[0].out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in metrics] == [0, 1, 2]  # resumed, not restarted
    stamps = [(r.out / "result.json").stat().st_mtime_ns for r in runs]
    run_sweep(cfg, out, runs)
    assert stamps == [(r.out / "result.json").stat().st_mtime_ns for r in runs]  # finished runs skipped
    summary = json.loads((out / "sweep.json").read_text())
    for regime in ("ln", "ln-simp"):
        mine = [r for r in rows if r["regime"] == regime]
        expected = min(mine, key=lambda r: r["best_eval_loss"])["lr"]
        assert summary["best"][regime]["lr"] == expected
    assert (out / "sweep.csv").read_text().splitlines()[0].startswith("regime,lr,seed")


def test_best_lr_averages_seeds():
    rows = [
        {"regime": "ln", "lr": lr, "seed": s, "best_eval_loss": loss, "final_loss": 0.0}
        for lr, s, loss in [(1e-3, 0, 1.0), (1e-3, 1, 3.0), (1e-4, 0, 1.5), (1e-4, 1, 1.6)]
    ]
    best = best_lrs(rows)["ln"]
    assert best["lr"] == 1e-4 and best["best_eval_loss"] == pytest.approx(statistics.fmean([1.5, 1.6]))


@pytest.mark.slow
def test_parallel_sweep_in_processes_matches_sequential(synth, tmp_path):
    """Three runs on two long-lived worker processes give the runs a sequential sweep gives, and the
    workers' messages stay out of the sweep's output."""
    rows = {}
    for parallel in (1, 2):
        out = tmp_path / f"sweep{parallel}"
        cfg = base(synth, out)
        rows[parallel] = run_sweep(cfg, out, plan(cfg, out, ["ln-simp"], [1e-2, 1e-3, 3e-3], [0]), parallel)
    assert [r["steps"] for r in rows[2]] == [2, 2, 2] and all(r["eval_loss"] is not None for r in rows[2])
    for one, two in zip(rows[1], rows[2], strict=True):
        assert two["final_loss"] == pytest.approx(one["final_loss"], rel=1e-4)
        assert two["eval_loss"] == pytest.approx(one["eval_loss"], rel=1e-4)
    assert not list((tmp_path / "sweep2" / "ln-simp").glob(".*.log"))  # kept only when a run fails


def test_a_failing_parallel_run_names_itself(synth, tmp_path):
    out = tmp_path / "sweep"
    cfg = base(synth, out).replace(model=str(tmp_path / "no-such-model"))
    with pytest.raises(InputError, match=r"sweep run .*lr0.01-seed0 failed: .*no-such-model"):
        run_sweep(cfg, out, plan(cfg, out, ["ln-simp"], [1e-2, 1e-3], [0]), parallel=2)
    assert list((out / "ln-simp").glob(".*.log"))  # the failed run's messages are kept beside it


def test_a_sweep_never_writes_into_a_foreign_directory(synth, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    cfg = base(synth, tmp_path)
    with pytest.raises(InputError, match="not written by `lnprobe sweep`"):
        run_sweep(cfg, tmp_path, plan(cfg, tmp_path, ["ln-simp"], [1e-2], [0]))
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_bad_sweeps(synth, tmp_path):
    with pytest.raises(InputError, match="unknown regime 'nope'"):
        plan(base(synth, tmp_path), tmp_path, ["ln", "nope"], [1e-3], [0])
    with pytest.raises(InputError, match="--lrs must be positive"):
        plan(base(synth, tmp_path), tmp_path, ["ln"], [-1.0], [0])


@pytest.mark.parametrize("parallel", [1, 2])
def test_follow_up_runs_join_the_sweep_and_first_runs_start_first(synth, tmp_path, parallel):
    """`first` starts chosen runs before the others (rows keep the plan's order); `follow_up` adds runs that
    depend on finished ones (the miniature's blind baseline at full's picked rate) to the same workers."""
    out = tmp_path / "sweep"
    cfg = base(synth, out)
    runs = plan(cfg, out, ["ln-simp", "ln"], [1e-2], [0])
    seen, extra = [], cfg.replace(regime="ln-simp", lr=3e-3, out=str(tmp_path / "extra"), progress=False)

    def follow_up(config):
        seen.append(config.regime)
        return [extra] if config.regime == "ln" else []

    rows = run_sweep(cfg, out, runs, parallel, follow_up=follow_up, first=lambda r: r.regime == "ln")
    assert [r["regime"] for r in rows] == ["ln-simp", "ln"]  # the plan's order
    assert sorted(seen) == ["ln", "ln-simp", "ln-simp"]  # every finished run, the extra one too
    if parallel == 1:
        assert seen == ["ln", "ln-simp", "ln-simp"]  # ln first; its follow-up joins the queue
    assert json.loads((tmp_path / "extra" / "result.json").read_text())["steps"] == 2


def test_a_run_interrupted_before_its_first_checkpoint_restarts(synth, tmp_path):
    out = tmp_path / "sweep"
    cfg = base(synth, out)
    runs = plan(cfg, out, ["ln-simp"], [1e-2, 1e-3], [0])
    claim_out(cfg, out)
    with pytest.raises(KeyboardInterrupt):  # stopped after step 1, nothing saved (save_every 0)
        train(runs[0].config(cfg), [StopAfterOne()])
    assert not (runs[0].out / "latest").exists() and (runs[0].out / "metrics.jsonl").is_file()
    runs[1].out.mkdir(parents=True)  # a folder lnprobe did not write stays, and the run there is refused
    (runs[1].out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="lr0.001-seed0"):
        run_sweep(cfg, out, runs)
    assert (runs[1].out / "notes.txt").read_text() == "mine"
    assert (runs[0].out / "result.json").is_file()  # the interrupted one started over and finished
    steps = [json.loads(x)["step"] for x in (runs[0].out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2]  # one record per step: the partial run's records went with it
