"""The paper miniature (`make demo`, `lnprobe demo`, `lnprobe study`): every stage runs end to end at the
smoke scale, is deterministic, re-runs reuse it; the default shape has the paper's trainable shares; the
goals and the study's pooling are checked on constructed numbers."""

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from lnprobe.errors import InputError
from lnprobe.io import WEIGHTS_REMOVED, read_path, removed_weights
from lnprobe.miniature.backbones import shipped
from lnprobe.miniature.config import CENTRE_LRS, REGIMES, SHAPE, SMOKE, MiniatureConfig
from lnprobe.miniature.demo import run_demo
from lnprobe.miniature.pipeline import run_miniature
from lnprobe.models import load

ROOT = Path(__file__).resolve().parents[2]
# the smoke scale with two learning rates per regime, so that the sweep leaves runs it did not pick
DEMO = MiniatureConfig(**{**SMOKE, "lr_factors": (1.0, 3.0)})


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    """Two smoke demos with the same settings: `a` as the demo runs by default (pruned), `b` with
    --keep-checkpoints."""
    root = tmp_path_factory.mktemp("demo")
    first = run_demo(root / "a", DEMO)
    second = run_demo(root / "b", replace(DEMO, keep_checkpoints=True))
    return root, first, second


def test_demo_end_to_end_is_deterministic(demo_runs):
    root, first, second = demo_runs
    rows = first["rows"]
    assert [r["regime"] for r in rows] == list(REGIMES)
    strip = [{k: v for k, v in r.items() if k != "checkpoint"} for r in rows]
    assert strip == [{k: v for k, v in r.items() if k != "checkpoint"} for r in second["rows"]]  # seeded
    assert first["baselines"] == second["baselines"]  # and pruning `a` changed no number
    for row in rows:
        lo, hi = row["ci95"]
        assert 0 <= lo <= row["accuracy"] <= hi <= 1 and row["n"] == 9
    by = {r["regime"]: r for r in rows}
    assert by["ln-simp"]["trainable_pct"] < by["ln"]["trainable_pct"] < by["full"]["trainable_pct"]
    assert by["ln"]["norm_grad_variance"] > 0 and by["full"]["norm_grad_variance"] > 0
    assert load(by["ln-simp"]["checkpoint"]).kind == "delta"
    val_acc = json.loads((root / "a" / "sweep" / "val_accuracy.json").read_text())
    assert len(val_acc) == 2 * len(REGIMES) and all(0 <= v <= 1 for v in val_acc.values())
    assert {r["val_accuracy"] for r in rows} <= set(val_acc.values())
    assert set(first["baselines"]) == {"majority", "blind", "pretrained"}
    assert set(first["goals"]) == {"full_accuracy", "ln_near_full", "ln_simp_over_majority", "above_blind"}
    assert set(first["timings"]) >= {"connector", "sweep", "blind", "accuracy", "claims"}
    assert first["backbones"] == {"llm": shipped("llm"), "vision": shipped("vision")}  # the shipped ones
    assert not (root / "a" / "llm").exists() and not (root / "a" / "vision").exists()
    verdicts = first["regime_verdicts"]  # every regime judged against full
    assert set(verdicts) == set(REGIMES) - {"full"}
    assert {r for r, v in verdicts.items() if "gradient_variance" in v} == {"ln", "ln-simp"}  # train norms
    report = root / "a" / "claims"
    assert (report / "report.html").is_file() and (report / "report.md").is_file()
    claims = json.loads((report / "claims.json").read_text())
    assert {c["id"]: c["verdict"] for c in claims["claims"]} == first["claims"]
    assert "training" in claims["gradients"]["ln"]["source"]  # the runs' gradient traces were used
    saved = json.loads((root / "a" / "demo_results.json").read_text())
    assert [{**r, "checkpoint": None} for r in saved] == [{**r, "checkpoint": None} for r in rows]
    for s, r in zip(saved, rows, strict=True):  # relative to the demo's folder: it can be moved
        assert not Path(s["checkpoint"]).is_absolute()
        assert read_path(s["checkpoint"], root / "a").resolve() == Path(r["checkpoint"]).resolve()
    assert [p.relative_to(root / "a") for p in (root / "a").rglob("plotly.min.js")] == [Path("plotly.min.js")]
    blind = json.loads((root / "a" / "blind" / "lnprobe_config.json").read_text())["config"]
    assert blind["data"].endswith("instruct_blind.json") and blind["regime"] == "full"


def test_demo_rerun_reuses_finished_stages(demo_runs, capsys):
    root, first, _ = demo_runs
    stamp = (root / "a" / "sweep").stat().st_mtime_ns
    saved = (root / "a" / "results.json").read_text()
    again = run_demo(root / "a", DEMO)  # `a` is pruned: its runs not picked are reused, not retrained
    assert again["rows"] == first["rows"] and (root / "a" / "sweep").stat().st_mtime_ns == stamp
    assert (root / "a" / "results.json").read_text() == saved
    _figures_from(root / "a", root / "figures")  # the figure scripts and the report read the pruned tree
    from lnprobe import cli

    assert cli.main(["report", str(root / "a")]) == 0
    before = sorted(p.relative_to(root) for p in (root / "a").rglob("*"))
    with pytest.raises(InputError, match=r"a was made with other settings \(finetune_steps 4 there, 5 now\)"):
        run_demo(root / "a", replace(DEMO, finetune_steps=5))  # would reuse 4-step runs
    assert sorted(p.relative_to(root) for p in (root / "a").rglob("*")) == before
    assert (root / "a" / "sweep").stat().st_mtime_ns == stamp
    (root / "old").mkdir()
    (root / "old" / "results.json").write_text("{}")  # an older miniature, settings not recorded
    with pytest.raises(InputError, match="settings were not recorded"):
        run_miniature(root / "old", MiniatureConfig(**SMOKE), progress=False)


def _pruned(root: Path, record: dict) -> dict[str, list[Path]]:
    """The demo's training runs by what the demo keeps of them: `picked` (each regime's picked sweep run)
    and `pruned` (the sweep's other runs, the blind baseline, the connector pre-training)."""
    picked = [Path(r["checkpoint"]).parents[1] for r in record["rows"]]
    swept = [run.parent for run in sorted((root / "sweep").glob("*/*/lnprobe_config.json"))]
    others = [run for run in swept if run not in picked]
    return {"picked": picked, "pruned": [*others, root / "blind", root / "runs" / "connector"]}


def _weights(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").rglob("*.safetensors"))


def test_demo_keeps_the_weights_later_stages_load_and_the_records_of_the_rest(demo_runs):
    """The picked runs, base and assembled keep their weights; the sweep runs not picked, blind and the
    connector run lose theirs but keep what they record: `lnprobe runs` lists each with its numbers, and
    loading one is a one-line error naming the demo. With --keep-checkpoints nothing goes."""
    from lnprobe.report.runs import collect

    root, first, _ = demo_runs
    runs = _pruned(root / "a", first)
    assert len(runs["picked"]) == len(REGIMES) and len(runs["pruned"]) == len(REGIMES) + 2
    for run in runs["picked"]:
        assert "rng.safetensors" in _weights(run) and (root / "b" / run.relative_to(root / "a")).is_dir()
    assert (root / "a" / "base" / "model.safetensors").is_file()
    assert (root / "a" / "assembled" / "model.safetensors").is_file()
    for run in runs["pruned"]:
        records = {"lnprobe_config.json", "result.json", "metrics.jsonl", "tensorboard", "latest"}
        assert _weights(run) == [] and records <= {p.name for p in run.iterdir()}, run
        assert _weights(root / "b" / run.relative_to(root / "a"))  # the same run, kept
        with pytest.raises(InputError) as err:
            load(run)
        assert "removed by `lnprobe demo`" in str(err.value) and "\n" not in str(err.value)
        assert "--keep-checkpoints" in str(err.value)
    rows = {r["path"]: r for r in collect(root / "a") if r["command"] == "train"}
    assert len(rows) == 2 * len(REGIMES) + 2 and all(
        r["steps"] == 4 and "final_loss" in r for r in rows.values()
    )
    assert {p for p, r in rows.items() if r.get("weights") == "removed"} == {
        run.relative_to(root / "a").as_posix() for run in runs["pruned"]
    }
    assert not list((root / "b").rglob(WEIGHTS_REMOVED))


def test_prune_never_deletes_what_lnprobe_did_not_write_nor_what_was_asked_kept(demo_runs, tmp_path):
    """On a copy of the kept demo: a re-run without --keep-checkpoints deletes nothing (an earlier run asked
    to keep them); pruning then leaves alone a file the user put in a run or a checkpoint, a run folder
    lnprobe did not write (no marker) and a folder outside the sweep's plan."""
    from lnprobe.miniature.prune import prune_miniature

    root, _, second = demo_runs
    out = tmp_path / "c"
    shutil.copytree(root / "b", out)
    again = run_demo(out, DEMO)["rows"]
    assert [{**r, "checkpoint": None} for r in again] == [{**r, "checkpoint": None} for r in second["rows"]]
    assert not list(out.rglob(WEIGHTS_REMOVED))
    runs = _pruned(out, second)
    mine, unmarked = runs["pruned"][0], runs["pruned"][1]
    (mine / "notes.txt").write_text("mine")
    step = next((mine / "checkpoints").iterdir())
    (step / "model-mine.safetensors").write_text("mine")
    (unmarked / ".lnprobe_output.json").unlink()
    stray = out / "sweep" / "ln" / "lr9-seed0" / "checkpoints" / "step-000004"
    stray.mkdir(parents=True)
    (stray / "model.safetensors").write_text("not lnprobe's")
    swept = [run.parent for run in (out / "sweep").glob("*/*/lnprobe_config.json")] + [stray.parents[1]]
    removed = prune_miniature(out, swept, runs["picked"], "demo")
    assert removed and all(unmarked not in p.parents for p in removed)
    assert (mine / "notes.txt").is_file() and _weights(mine) == ["model-mine.safetensors"]
    assert "delta.safetensors" in _weights(unmarked) or "model.safetensors" in _weights(unmarked)
    assert (stray / "model.safetensors").is_file()
    assert prune_miniature(out, swept, runs["picked"], "demo") == []  # once only


def test_study_pools_seeds_and_writes_its_report(demo_runs, tmp_path):
    from lnprobe.miniature.study import run_study

    root, first, _ = demo_runs
    shutil.copytree(root / "a", tmp_path / "seed-0")  # seed 0 is the demo's run, reused
    study = run_study(tmp_path, DEMO, [0, 1], progress=False)
    assert study["seeds"] == [0, 1]
    full = study["accuracy"]["full"]
    assert full["per_seed"][0] == next(r["accuracy"] for r in first["rows"] if r["regime"] == "full")
    assert abs(full["value"] - sum(full["per_seed"]) / 2) < 1e-12
    assert all(0 <= a["ci95"][0] <= a["ci95"][1] <= 1 for a in study["accuracy"].values() if a["ci95"])
    from lnprobe import cli

    assert cli.main(["report", str(tmp_path)]) == 0  # study.md again, and study.html, from study.json
    assert "<table>" in (tmp_path / "study.html").read_text()
    md = (tmp_path / "study.md").read_text()
    assert "make miniature" in md and "| full |" in md and (tmp_path / "accuracy.png").is_file()
    assert 'src="plotly.min.js"' in (tmp_path / "accuracy.html").read_text()  # offline, the study's one
    assert (tmp_path / "plotly.min.js").is_file() and not (tmp_path / "seed-1" / "plotly.min.js").exists()
    from lnprobe.claims.verdicts import paired_test

    seeds = [json.loads((tmp_path / f"seed-{s}" / "results.json").read_text()) for s in (0, 1)]
    for cid, c in study["claims"].items():  # the study's verdict is the paired test of the seeds' differences
        assert c["differences"] == [r["claim_tests"][cid]["difference"] for r in seeds]
        assert c["verdict"] == paired_test(c["differences"], "lower", c["delta"]).verdict
        assert c["test"]["units"] == 2 and c["test"]["unit"] == "seeds"
    assert "| claim | outcome |" in md and "sign-flip p" in md
    notes = sorted((tmp_path / "seed-1").rglob(WEIGHTS_REMOVED))  # each seed pruned as the demo is
    assert len(notes) == len(REGIMES) + 2 and "lnprobe study" in removed_weights(notes[0].parent)


def test_pretrain_stages_build_their_own_backbones_in_the_run(tmp_path):
    """`--pretrain`: the vision and llm stages pre-train from fresh towers of the miniature's shape into the
    run's folder (each once) instead of returning the shipped backbones."""
    from lnprobe.miniature.pipeline import Stages

    stages = Stages(tmp_path, MiniatureConfig(**SMOKE, pretrain=True), progress=False)
    data = stages.data()
    llm, vision = stages.llm(data), stages.vision(data)
    assert (llm, vision) == (str(tmp_path / "llm"), str(tmp_path / "vision"))
    assert (
        json.loads((tmp_path / "llm" / "lnprobe_config.json").read_text())["config"]["steps"]
        == SMOKE["text_steps"]
    )
    stamp = (tmp_path / "llm" / "model.safetensors").stat().st_mtime_ns
    assert stages.llm(data) == llm and (tmp_path / "llm" / "model.safetensors").stat().st_mtime_ns == stamp
    plain = Stages(tmp_path / "b", MiniatureConfig(**SMOKE), progress=False)
    assert (plain.llm(data), plain.vision(data)) == (shipped("llm"), shipped("vision"))


def test_default_shape_has_the_papers_trainable_shares():
    """ln 2-6 %, ln-simp <= 0.1 %, lora (at the miniature's rank) 0.5-3 %, full >= 85 % (issue 14)."""
    from lnprobe.models.tiny import build_tiny
    from lnprobe.params import regime_report
    from lnprobe.regimes import RegimeOptions

    model, _ = build_tiny(SHAPE)
    rank = MiniatureConfig().lora_rank
    pct = {
        r: regime_report(model, r, RegimeOptions(lora_rank=rank)).percent
        for r in ("ln", "ln-simp", "lora", "full")
    }
    assert 2 <= pct["ln"] <= 6 and pct["ln-simp"] <= 0.1 and 0.5 <= pct["lora"] <= 3 and pct["full"] >= 85, (
        pct
    )


def test_goals_on_constructed_accuracies():
    from lnprobe.miniature.table import goals

    def acc(a, half=0.03):
        return {"accuracy": a, "ci95": (a - half, a + half)}

    good = {
        "majority": acc(0.35),
        "blind": acc(0.38),
        "full": acc(0.95),
        "ln": acc(0.92),
        "ln-simp": acc(0.60),
    }
    assert goals(good, ("full", "ln", "ln-simp")) == dict.fromkeys(
        ("full_accuracy", "ln_near_full", "ln_simp_over_majority", "above_blind"), True
    )
    bad = {**good, "ln": acc(0.85), "ln-simp": acc(0.40, half=0.05), "full": acc(0.89)}
    assert goals(bad, ("full", "ln", "ln-simp")) == {
        "full_accuracy": False,
        "ln_near_full": True,
        "ln_simp_over_majority": False,
        "above_blind": False,
    }  # ln-simp's interval reaches down to the blind baseline


def test_pick_runs_prefers_validation_accuracy_then_loss_then_the_lower_rate():
    from lnprobe.miniature.pipeline import pick_runs

    def row(regime, lr, loss):
        return {"regime": regime, "lr": lr, "eval_loss": loss, "run": f"out/sweep/{regime}/{lr}"}

    rows = [
        row("ln", 0.003, 0.062),
        row("ln", 0.01, 0.054),
        row("ln", 0.03, 0.046),  # the lowest loss, but it answers worse: seed 2 of the study
        row("full", 0.001, 0.03),
        row("full", 0.003, 0.03),  # equal accuracy and loss: the lower rate
        row("lora", 0.01, 0.05),
    ]
    acc = {"ln/0.003": 0.971, "ln/0.01": 0.971, "ln/0.03": 0.914, "full/0.001": 1.0, "full/0.003": 1.0}
    acc["lora/0.01"] = 0.5
    picked = pick_runs(rows, acc)
    assert {r: p["lr"] for r, p in picked.items()} == {"ln": 0.01, "full": 0.001, "lora": 0.01}
    assert list(picked) == ["ln", "full", "lora"]


def test_miniature_config_refuses_bad_values():
    from lnprobe.errors import InputError

    for bad in (
        {"regimes": ("ln", "ln")},
        {"regimes": ("ln", "lora")},
        {"lr_factors": ()},
        {"lr_factors": (0.0,)},
        {"images": 3},
    ):
        with pytest.raises(InputError):
            MiniatureConfig(**bad)
    assert MiniatureConfig().lrs("full") == [0.001, 0.003, 0.009]
    assert MiniatureConfig(centre_lrs={**CENTRE_LRS, "ln": 1e-2}).lrs("ln") == [0.00333, 0.01, 0.03]
    with pytest.raises(InputError, match="no centre learning rate"):
        MiniatureConfig(regimes=("ln", "full", "attn-qv"))
    assert replace(MiniatureConfig(), seed=4).seed == 4


def _figures_from(results, out):
    """Every analyses/fig_*.py script draws its figure (PNG + HTML) from the demo's saved results."""
    scripts = sorted((ROOT / "analyses").glob("fig_*.py"))
    assert len(scripts) == 5
    for script in scripts:
        done = subprocess.run(
            [sys.executable, str(script), str(results), "--out", str(out)], capture_output=True, text=True
        )
        assert done.returncode == 0, (script.name, done.stderr[-2000:])
    pngs = sorted(p.stem for p in out.glob("*.png"))
    assert pngs == ["grad_variance", "layer_similarity_cka", "ln_shift", "lr_sweep", "params_memory"]
    assert all((out / f"{stem}.html").is_file() for stem in pngs)
    missing = subprocess.run(
        [sys.executable, str(scripts[0]), str(out / "nope")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "no such results directory" in missing.stderr
