"""The paper's pipeline in miniature, one stage per step, each with its own output under OUT:

    data/        the synthetic shapes task (train / val / eval, blind copies, text corpus)
    vision/, llm/  only with `pretrain`: a CLIP vision tower pre-trained contrastively on the training
                 captions and a text LLM pre-trained on the text corpus. By default the run starts from the
                 shipped backbones (lnprobe.miniature.backbones), pre-trained the same way on a world of
                 their own, as the paper starts from a downloaded Vicuna and CLIP
    assembled/   `lnprobe assemble`: vision tower + fresh linear connector + LLM
    base/        connector pre-training on captions (`connector` regime), merged. The caption is asked for
                 ("Describe the picture in detail.", `chat` template) rather than following the image
                 bare (`plain`): the miniature LLM learned to describe only when asked
    sweep/       finetuning per regime at each learning rate of its grid (gradient statistics recorded);
                 the highest validation answer accuracy picks the learning rate, the lower validation
                 loss breaking ties (loss alone picked runs that answer worse: docs/miniature.md)
    blind/       the blind baseline: the same LLM finetuned (`full`) on the questions without images
    claims/      `lnprobe claims` on base / ln / full, the other regimes judged beside them
    (prune)      once every stage has run, the weights no later stage loads go: those of the sweep runs not
                 picked, of blind/ and of runs/connector (merged into base/); what they record stays
                 (lnprobe.miniature.prune). `keep_checkpoints` keeps them
    results.json every number of the table, the stage timings and the configuration (its paths relative to
                 OUT when inside it, so OUT can be moved or copied: `saved_record`)

A stage whose output exists is reused, so an interrupted run continues and a finished one re-prints; OUT
records the settings it was made with (settings.json) and is reused only with the same ones.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from lnprobe.errors import InputError
from lnprobe.io import MARKER, results_tree
from lnprobe.miniature.backbones import MAX_SHAPES, QTYPES, pretrained_llm, pretrained_vision, shipped
from lnprobe.miniature.config import MiniatureConfig

GRADIENT_SAMPLES = 64  # norm-gradient samples each finetuning run records, at least (steps permitting)
STAGES = (
    *("data", "vision", "llm", "assemble", "connector", "sweep", "blind", "accuracy", "forgetting"),
    *("claims", "prune"),
)


class Stages:
    def __init__(self, out: Path, cfg: MiniatureConfig, progress, command: str = "demo") -> None:
        self.out, self.cfg, self.progress, self.command = out, cfg, progress, command
        self.timings_path = out / "timings.json"
        self.timings = json.loads(self.timings_path.read_text()) if self.timings_path.is_file() else {}

    def run(self, name: str, fn, *args):
        """Run stage `name`, recording its wall time the first time it runs in OUT (a re-run reuses the
        finished stage and keeps that first time; naming the shipped backbones takes ~0 s)."""
        start = time.perf_counter()
        result = fn(*args)
        spent = time.perf_counter() - start
        if name not in self.timings:
            self.timings[name] = round(spent, 1)
            self.timings_path.write_text(json.dumps(self.timings, indent=1) + "\n")
        return result

    def data(self) -> Path:
        from lnprobe.data.synth import SynthConfig, write_synth
        from lnprobe.miniature.userdata import prepare_user_data

        data = self.out / "data"
        if not self.cfg.synthetic:
            return data if (data / "eval.json").is_file() else prepare_user_data(self.cfg, data)
        if not (data / "eval.json").is_file():
            synth = SynthConfig(
                n=self.cfg.images,
                seed=self.cfg.seed,
                eval_fraction=self.cfg.eval_fraction,
                qtypes=QTYPES,
                max_shapes=MAX_SHAPES,
            )
            write_synth(data, synth)
        return data

    def vision(self, data: Path) -> str:
        if self.cfg.vision or not self.cfg.pretrain:
            return self.cfg.vision or shipped("vision")
        return pretrained_vision(self.out, data, self.cfg.vision_steps, self.cfg.seed, self.progress)

    def llm(self, data: Path) -> str:
        if self.cfg.llm or not self.cfg.pretrain:
            return self.cfg.llm or shipped("llm")
        return pretrained_llm(self.out, data, self.cfg.text_steps, self.cfg.seed, self.progress)

    def assemble(self, llm: str, vision: str) -> Path:
        from lnprobe.models.assemble import AssembleConfig, assemble

        out = self.out / "assembled"
        if not (out / "config.json").is_file():
            assemble(
                AssembleConfig(
                    llm=llm,
                    vision=vision,
                    out=str(out),
                    connector="linear",
                    seed=self.cfg.seed,
                    online=self.cfg.online,
                    force=True,
                )
            )
        return out

    def connector(self, assembled: Path, data: Path) -> Path:
        """Connector pre-training on captions, merged into a full checkpoint: the finetuning base."""
        from lnprobe.io import Output
        from lnprobe.models import load
        from lnprobe.models.hf import save_quietly
        from lnprobe.train import TrainConfig, train

        merged = self.out / "base"
        if (merged / "config.json").is_file():
            return merged
        run = self.out / "runs" / "connector"
        result = train(
            TrainConfig(
                model=str(assembled),
                regime="connector",
                data=str(data / "pretrain.json"),
                template=self.cfg.template,
                out=str(run),
                max_steps=self.cfg.connector_steps,
                lr=self.cfg.connector_lr,
                batch_size=2 * self.cfg.batch_size,
                warmup_ratio=0.1,
                seed=self.cfg.seed,
                progress=self.progress,
                grad_ckpt="off",
                final_optimizer=False,  # the miniature never extends a finished run
                resume=str(run) if (run / "latest").is_file() else None,
            )
        )
        loaded = load(result.checkpoint)
        with Output(merged, "miniature").build() as tmp:  # appears whole or not at all: reuse is safe
            save_quietly(loaded.model, tmp)
            loaded.processor.save_pretrained(tmp)
        return merged

    def finetune_config(self, base: Path, data: Path, blind: bool = False):
        from lnprobe.train import TrainConfig

        suffix = "_blind" if blind else ""
        c = self.cfg
        return TrainConfig(
            model=str(base),
            data=str(data / f"instruct{suffix}.json"),
            eval_data=str(data / f"val{suffix}.json"),
            template=self.cfg.template,
            max_steps=c.finetune_steps,
            batch_size=c.batch_size,
            warmup_ratio=0.1,
            seed=c.seed,
            progress=False,
            grad_ckpt="off",
            final_optimizer=False,
            lora_rank=c.lora_rank,
            # >= 64 micro-batch gradients per run (every 3rd of 200 steps: 66), the same steps, hence the
            # same batches, in every regime: enough for the variance's interval (docs/statistics.md)
            gradvar_every=max(1, c.finetune_steps // GRADIENT_SAMPLES),
        )

    def sweep(self, base: Path, data: Path) -> dict:
        """Every regime at every learning rate of its grid; per regime, the run that answers the validation
        questions best (`pick_runs`)."""
        from lnprobe.train.state import latest_checkpoint
        from lnprobe.train.sweep import run_sweep

        config = self.finetune_config(base, data)
        out = self.out / "sweep"
        runs = self.sweep_runs(config)
        # full first (the blind baseline starts as soon as full's rate is picked, beside the other runs),
        # then lora (the longest runs) for a balanced finish
        rows = run_sweep(
            config,
            out,
            runs,
            parallel=self.cfg.parallel,
            follow_up=self._blind_follow_up(base, data, [r for r in runs if r.regime == "full"]),
            first=lambda r: r.regime in ("full", "lora"),
        )
        val_acc = self.val_accuracy(rows, data, out / "val_accuracy.json")
        results = {}
        for regime, row in pick_runs(rows, val_acc).items():
            run = Path(row["run"])
            first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
            results[regime] = {
                "run": str(run),
                "checkpoint": str(latest_checkpoint(run)),
                "lr": row["lr"],
                "val_accuracy": val_acc[run_key(row)],
                "val_loss_before": first["eval_loss"],
                "val_loss": row["eval_loss"],
            }
        return results

    def sweep_runs(self, config) -> list:
        """The sweep's runs (`SweepRun`): every regime at every learning rate of its grid, under OUT/sweep."""
        from lnprobe.train.sweep import plan

        out = self.out / "sweep"
        return [
            r
            for regime in self.cfg.regimes
            for r in plan(config, out, [regime], self.cfg.lrs(regime), [self.cfg.seed])
        ]

    def val_accuracy(self, rows: list[dict], data: Path, path: Path) -> dict[str, float]:
        """Answer accuracy of every sweep run on the validation questions (cached in `path`, keyed by
        `run_key`, so a moved or copied OUT still reads it): the runs' own final evaluation
        (`eval_accuracy`); a run trained before lnprobe recorded it is scored here."""
        from lnprobe.eval.accuracy import answer_accuracy
        from lnprobe.models import load
        from lnprobe.train.state import latest_checkpoint

        if path.is_file():
            return json.loads(path.read_text())
        out = {}
        for row in rows:
            if row.get("eval_accuracy") is not None:
                out[run_key(row)] = row["eval_accuracy"]
                continue
            loaded = load(str(latest_checkpoint(Path(row["run"]))))
            acc = answer_accuracy(
                loaded.model, loaded.processor, str(data / "val.json"), template=self.cfg.template
            )
            out[run_key(row)] = acc["accuracy"]
        path.write_text(json.dumps(out, indent=1) + "\n")
        return out

    def _blind_follow_up(self, base: Path, data: Path, full_runs: list):
        """The sweep's follow-up: once every `full` run has finished, the blind baseline at the rate
        `pick_runs` picks for full (the `blind` stage then finds it trained)."""
        from lnprobe.train.sweep import result_row

        started = []

        def follow_up(config) -> list:
            done = all((r.out / "result.json").is_file() for r in full_runs)
            if started or not done or (self.out / "blind" / "latest").is_file():
                return []
            rows = [result_row(r) for r in full_runs]
            if any(r.get("eval_accuracy") is None for r in rows):
                return []
            lr = pick_runs(rows, {run_key(r): r["eval_accuracy"] for r in rows})["full"]["lr"]
            started.append(lr)
            return [self.blind_config(base, data, lr)]

        return follow_up

    def blind_config(self, base: Path, data: Path, lr: float):
        return self.finetune_config(base, data, blind=True).replace(
            regime="full", lr=lr, out=str(self.out / "blind"), gradvar_every=0
        )

    def blind(self, base: Path, data: Path, lr: float) -> str:
        from lnprobe.train import train
        from lnprobe.train.state import latest_checkpoint

        run = self.out / "blind"
        if (run / "latest").is_file():  # trained (it saves at its end only), maybe by the sweep's workers
            return str(latest_checkpoint(run))
        return str(train(self.blind_config(base, data, lr)).checkpoint)

    def accuracy(self, base: Path, results: dict, blind: str, data: Path) -> dict:
        """Held-out answer accuracy with its 95 % Wilson interval: the connector-pretrained base, each regime,
        the blind baseline (on the questions without images) and the majority answer per question type."""
        from lnprobe.eval.accuracy import answer_accuracy, majority_baseline, wilson
        from lnprobe.models import load

        path = self.out / "accuracy.json"
        if path.is_file():
            return json.loads(path.read_text())
        specs = {
            "pretrained": (str(base), "eval"),
            **{r: (v["checkpoint"], "eval") for r, v in results.items()},
            "blind": (blind, "eval_blind"),
        }
        out = {}
        for name, (spec, split) in specs.items():
            loaded = load(spec)
            acc = answer_accuracy(
                loaded.model, loaded.processor, str(data / f"{split}.json"), template=self.cfg.template
            )
            out[name] = {
                "accuracy": acc["accuracy"],
                "ci95": wilson(acc["correct"], acc["n"]),
                "n": acc["n"],
                "correct": acc["correct"],
                "by_type": _by_type(acc["items"], data / f"{split}.json"),
            }
        major = majority_baseline(data / "instruct.json", data / "eval.json")
        out["majority"] = {**major, "ci95": wilson(major["correct"], major["n"])}
        path.write_text(json.dumps(out, indent=1) + "\n")
        return out

    def claims(self, base: Path, results: dict, data: Path) -> dict:
        from lnprobe.claims import ClaimsConfig, run_claims

        path = self.out / "claims" / "claims.json"
        if path.is_file():
            return json.loads(path.read_text())
        others = {r: v["checkpoint"] for r, v in results.items() if r not in ("ln", "full")}
        return run_claims(
            ClaimsConfig(
                base=str(base),
                ln=results["ln"]["checkpoint"],
                full=results["full"]["checkpoint"],
                others=others,
                data=str(data / "eval.json"),
                out=str(self.out / "claims"),
                ln_runs=(results["ln"]["run"],),
                full_runs=(results["full"]["run"],),
                n=self.cfg.probe_n,
                batch_size=min(8, self.cfg.probe_n // 2),  # two minibatches at least: an interval
                seed=self.cfg.seed,
                bootstrap=self.cfg.bootstrap,
                template=self.cfg.template,
                progress=False,
            )
        )

    def prune(self, base: Path, data: Path, results: dict, keep: bool) -> list[Path]:
        """Once every stage has run: the weights that no stage loads again deleted (`prune_miniature`: the
        sweep runs not picked, the blind baseline, the connector run), unless `keep`. Returns those files."""
        from lnprobe.miniature.prune import prune_miniature

        if keep:
            return []
        swept = [r.out for r in self.sweep_runs(self.finetune_config(base, data))]
        picked = [Path(v["run"]) for v in results.values()]
        return prune_miniature(self.out, swept, picked, self.command, inputs=(self.cfg.llm, self.cfg.vision))


def run_key(row: dict) -> str:
    """A sweep run's name inside its sweep folder: `<regime>/lr<lr>-seed<seed>`."""
    return "/".join(Path(row["run"]).parts[-2:])


def pick_runs(rows: list[dict], val_accuracy: dict[str, float]) -> dict[str, dict]:
    """Per regime, the sweep row with the highest validation answer accuracy; among equal accuracies the
    lower validation loss, then the lower learning rate."""
    best: dict[str, dict] = {}
    for row in rows:
        key = (-val_accuracy[run_key(row)], row["eval_loss"], row["lr"])
        held = best.get(row["regime"])
        if held is None or key < (-val_accuracy[run_key(held)], held["eval_loss"], held["lr"]):
            best[row["regime"]] = row
    return best


def _by_type(items: list[dict], path: Path) -> dict:
    from collections import defaultdict

    qtype = {r["id"]: r.get("qtype", "?") for r in json.loads(path.read_text())}
    hits: dict[str, list] = defaultdict(list)
    for it in items:
        hits[qtype.get(it["id"], "?")].append(it["correct"])
    return {k: sum(v) / len(v) for k, v in sorted(hits.items())}


def run_miniature(out: Path, cfg: MiniatureConfig, progress: bool = True, command: str = "demo") -> dict:
    """Every stage in order (reusing finished ones); returns the results record (also OUT/results.json).
    `command` (demo or study) is named in the note a pruned checkpoint keeps."""
    from rich.progress import Progress

    from lnprobe.miniature.forgetting import forgetting
    from lnprobe.miniature.table import results_record, saved_record

    _same_settings(out, cfg)
    keep = _keeps_checkpoints(out, cfg)
    stages = Stages(out, cfg, progress, command)
    with results_tree(out), Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("miniature", total=len(STAGES))

        def step(name, fn, *args):
            bar.update(task, description=f"miniature: {name}")
            result = stages.run(name, fn, *args)
            bar.advance(task)
            return result

        data = step("data", stages.data)
        vision = step("vision", stages.vision, data)
        llm = step("llm", stages.llm, data)
        assembled = step("assemble", stages.assemble, llm, vision)
        base = step("connector", stages.connector, assembled, data)
        results = step("sweep", stages.sweep, base, data)
        blind = step("blind", stages.blind, base, data, results["full"]["lr"])
        accuracy = step("accuracy", stages.accuracy, base, results, blind, data)
        lost = step("forgetting", forgetting, out, cfg, base, results, data, progress)
        claims = step("claims", stages.claims, base, results, data)
        step("prune", stages.prune, base, data, results, keep)
    backbones = {"llm": llm, "vision": vision}
    record = results_record(cfg, base, results, accuracy, claims, stages.timings, backbones, lost)
    (out / "results.json").write_text(json.dumps(saved_record(record, out), indent=1) + "\n")
    return record


SETTINGS_FILE = "settings.json"
_NO_EFFECT = ("parallel", "keep_checkpoints")  # settings that change no number (runs at once, files kept)


def _same_settings(out: Path, cfg: MiniatureConfig) -> None:
    """Record the settings in a new OUT; refuse to continue an OUT made with other settings (its finished
    stages would be reused as if they had been made with these)."""
    path = out / SETTINGS_FILE
    now = {k: v for k, v in json.loads(json.dumps(dataclasses.asdict(cfg))).items() if k not in _NO_EFFECT}
    if path.is_file():
        before = {k: v for k, v in json.loads(path.read_text()).items() if k not in _NO_EFFECT}
        changed = [k for k in sorted(set(now) | set(before)) if now.get(k) != before.get(k)]
        if changed:
            shown = "; ".join(f"{k} {before.get(k)!r} there, {now.get(k)!r} now" for k in changed[:3])
            raise InputError(f"{out} was made with other settings ({shown}): choose another --out")
        return
    if out.is_dir() and any(p.name != MARKER for p in out.iterdir()):
        raise InputError(f"{out} holds a miniature whose settings were not recorded: choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(now, indent=1) + "\n")


def _keeps_checkpoints(out: Path, cfg: MiniatureConfig) -> bool:
    """Whether this run keeps every checkpoint: asked now, or asked by an earlier run into OUT (recorded in
    its settings.json), so that a re-run without --keep-checkpoints never deletes what was asked kept."""
    path = out / SETTINGS_FILE
    saved = json.loads(path.read_text())
    if cfg.keep_checkpoints and not saved.get("keep_checkpoints"):
        path.write_text(json.dumps({**saved, "keep_checkpoints": True}, indent=1) + "\n")
    return cfg.keep_checkpoints or saved.get("keep_checkpoints") is True
