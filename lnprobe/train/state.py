"""Checkpoints of a training run: the model part (a delta, or a full HF checkpoint for `full`) plus the
state that makes resuming exact: optimizer moments (safetensors, keyed by parameter name; left out of the
last checkpoint with `final_optimizer=False`), RNG states, the step and the position in the data order.
Written atomically; `latest` names the newest one."""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from lnprobe.checkpoints.delta import DELTA_FILE, TENSORS_FILE, DeltaInfo, fingerprint
from lnprobe.errors import InputError
from lnprobe.io import atomic_dir
from lnprobe.models.hf import quiet_transformers
from lnprobe.regimes import resolve_regime

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
LATEST = "latest"
METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"  # written when a run finishes


def checkpoint_dir(run: Path, step: int) -> Path:
    return run / "checkpoints" / f"step-{step:06d}"


def save_checkpoint(run: Path, step: int, trainer) -> Path:
    """Write checkpoint `step` (model part + exact-resume state) and point `latest` at it. Called on every
    process: each contributes its RNG state; the main process writes. Sharded runs: shard_state's twin."""
    out = checkpoint_dir(run, step)
    rng = gathered_rng(trainer)
    if trainer.accelerator.is_main_process:
        with atomic_dir(out) as tmp:
            _save_model_part(tmp, step, trainer)
            if trainer.config.final_optimizer or step < trainer.total_steps:
                optimizer = _optimizer_tensors(trainer.optimizer, trainer.param_names)
                save_file(optimizer, str(tmp / OPTIMIZER_FILE))
            write_resume_state(tmp, step, trainer, rng)
        point_latest(run, out)
    trainer.accelerator.wait_for_everyone()
    return out


def gathered_rng(trainer) -> dict[str, torch.Tensor]:
    """Every process's RNG states, keyed by rank (call on every process; the main one writes them)."""
    from accelerate.utils import gather_object

    states = gather_object([_rng_tensors(trainer.rank)]) if trainer.world > 1 else [_rng_tensors(0)]
    return {k: v for state in states for k, v in state.items()}


def write_resume_state(tmp: Path, step: int, trainer, rng: dict[str, torch.Tensor]) -> None:
    """A checkpoint's RNG file and trainer state (step, Python RNG, config, number of processes)."""
    save_file(rng, str(tmp / RNG_FILE))
    state = {
        "step": step,
        "python_rng": _jsonable(random.getstate()),
        "config": asdict(trainer.config),
        "processes": trainer.world,
    }
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")


def point_latest(run: Path, ckpt: Path) -> None:
    """Point the run's `latest` at `ckpt`, atomically."""
    pointer = run / f".{LATEST}.tmp"
    pointer.write_text(ckpt.name + "\n")
    os.replace(pointer, run / LATEST)


def restore_rng(ckpt: Path, state: dict, rank: int) -> None:
    """Set the torch (CPU, CUDA) RNG states that process `rank` saved in `ckpt`, and the Python RNG."""
    rng = load_file(str(ckpt / RNG_FILE))
    torch.set_rng_state(rng[f"torch_cpu_r{rank}"])
    if torch.cuda.is_available():
        prefix = f"cuda_r{rank}_"
        torch.cuda.set_rng_state_all([rng[k] for k in sorted(rng) if k.startswith(prefix)])
    random.setstate(_tupled(state["python_rng"]))


def _save_model_part(tmp: Path, step: int, trainer, tensors: dict | None = None) -> None:
    """The model part: a full HF checkpoint (`full`) or a delta of the trainable parameters; `tensors`: the
    model's state dict (whole model) or trainable parameters (delta) when the model's own are sharded."""
    if resolve_regime(trainer.config.regime).whole_model:
        with quiet_transformers():
            trainer.model.save_pretrained(tmp, state_dict=tensors)
            if trainer.processor is not None:
                trainer.processor.save_pretrained(tmp)
        return
    base = trainer.base_spec
    info = DeltaInfo(
        base=base,
        base_fingerprint=fingerprint(base) if Path(base).is_dir() else None,
        regime=trainer.config.regime,
        regime_options=asdict(trainer.regime_options),
        extra={"step": step},
    )
    named = tensors or {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}
    save_file({n: p.detach().contiguous().cpu() for n, p in named.items()}, str(tmp / TENSORS_FILE))
    (tmp / DELTA_FILE).write_text(json.dumps(asdict(info), indent=2) + "\n")


def latest_checkpoint(run: Path) -> Path | None:
    pointer = run / LATEST
    if not pointer.is_file():
        return None
    path = run / "checkpoints" / pointer.read_text().strip()
    if not (path / STATE_FILE).is_file():
        raise InputError(f"{pointer}: names {path.name}, which is not a complete checkpoint")
    return path


def read_state(ckpt: Path) -> dict:
    return json.loads((ckpt / STATE_FILE).read_text())


def restore(ckpt: Path, trainer) -> int:
    """Load optimizer moments and RNG states from `ckpt`; returns its step. Sharded runs: shard_state's
    twin."""
    state = read_state(ckpt)
    if not (ckpt / OPTIMIZER_FILE).is_file():
        raise InputError(
            f"{ckpt}: no optimizer state (its run finished with --no-final-optimizer), so the run cannot be "
            "extended; start a new run from its weights (--model)"
        )
    tensors = load_file(str(ckpt / OPTIMIZER_FILE))
    opt_state = trainer.optimizer.state_dict()
    for index, name in enumerate(trainer.param_names):
        keys = [k.split("/", 1)[1] for k in tensors if k.split("/", 1)[0] == name]
        if keys:
            opt_state["state"][index] = {k: tensors[f"{name}/{k}"] for k in keys}
    trainer.optimizer.load_state_dict(opt_state)
    if state.get("processes", 1) != trainer.world:
        raise InputError(
            f"{ckpt}: saved by {state.get('processes', 1)} processes, resumed with {trainer.world}"
        )
    restore_rng(ckpt, state, trainer.rank)
    return int(state["step"])


def _optimizer_tensors(optimizer: torch.optim.Optimizer, names: list[str]) -> dict[str, torch.Tensor]:
    state = optimizer.state_dict()["state"]
    return {
        f"{names[i]}/{key}": (value if torch.is_tensor(value) else torch.tensor(value))
        .detach()
        .contiguous()
        .cpu()
        for i, entry in state.items()
        for key, value in entry.items()
    }


def _rng_tensors(rank: int) -> dict[str, torch.Tensor]:
    out = {f"torch_cpu_r{rank}": torch.get_rng_state()}
    if torch.cuda.is_available():
        out.update({f"cuda_r{rank}_{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return out


def _jsonable(value):
    return [_jsonable(v) for v in value] if isinstance(value, tuple | list) else value


def _tupled(value):
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


def finished_result(run: Path, step: int, checkpoint: Path | None) -> dict:
    """TrainResult fields of a finished run: its result.json, or, when that is gone (an interrupted
    re-run removed it), rebuilt from metrics.jsonl."""
    path = run / RESULT_FILE
    if path.is_file():
        saved = json.loads(path.read_text())
        return {**saved, "run": Path(saved["run"]), "checkpoint": Path(saved["checkpoint"])}
    rows = [json.loads(x) for x in (run / METRICS_FILE).read_text().splitlines()]
    evaluated = [r for r in rows if "eval_loss" in r and r["step"] > 0]
    evals = [r["eval_loss"] for r in evaluated]
    loss = next((r["loss"] for r in reversed(rows) if "loss" in r), float("nan"))
    return {
        "run": run,
        "checkpoint": checkpoint,
        "steps": step,
        "final_loss": loss,
        "eval_loss": evals[-1] if evals else None,
        "best_eval_loss": min(evals) if evals else None,
        "eval_accuracy": evaluated[-1].get("eval_accuracy") if evaluated else None,
    }
