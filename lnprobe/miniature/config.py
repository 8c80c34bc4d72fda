"""The paper miniature's settings: its model shape, data size, steps per stage and learning-rate grids."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lnprobe.config import at_least, option, positive, ranged, seed_field, validate
from lnprobe.errors import InputError
from lnprobe.models.config import TinyConfig

# A shape whose trainable shares fall near the paper's (ln 3.78 %, ln-simp 0.004 %, LoRA r32 ~1 %, full
# ~95 % of LLaVA-7B): a wide MLP and a word-level vocabulary keep norms and embeddings small next to the
# decoder, and the vision tower small next to the LLM. `lnprobe params` on the demo's base prints them.
SHAPE = TinyConfig(
    hidden_size=64,
    intermediate_size=640,
    num_layers=4,
    num_heads=4,
    num_kv_heads=4,
    vision_hidden_size=48,
    vision_intermediate_size=96,
    vision_layers=2,
    vision_heads=4,
    image_size=32,
    patch_size=16,
    tokenizer="words",
)
REGIMES = ("ln", "ln-simp", "full", "lora", "connector")
# Each regime's centre learning rate; the sweep tries it times each of `lr_factors`.
# (Re-centred 2026-11-29 on the shipped backbones: a first run picked the top of the ln, ln-simp, full
# and connector grids.)
CENTRE_LRS = {"ln": 1e-2, "ln-simp": 3e-2, "full": 3e-3, "lora": 1e-2, "connector": 1e-2}


@dataclass(frozen=True)
class MiniatureConfig:
    """One run of the miniature (one seed). Defaults are `make demo`'s scale."""

    seed: int = seed_field(0, "Seed of everything: data, initialisation, batches.")
    images: int = at_least(20, 1400, "Pictures: training + 5 % validation + --eval-fraction held out.")
    eval_fraction: float = ranged(0.15, 0, 1, lo_open=True, hi_open=True, help="Share of held-out pictures.")
    vision_steps: int = at_least(1, 200, "Vision pre-training steps (with --pretrain).")
    text_steps: int = at_least(1, 200, "Text pre-training steps (with --pretrain).")
    connector_steps: int = at_least(1, 300, "Connector pre-training steps on captions.")
    connector_lr: float = positive(1e-2, "Connector pre-training learning rate.")
    finetune_steps: int = at_least(1, 200, "Finetuning steps per regime and learning rate.")
    batch_size: int = at_least(1, 16, "Finetuning batch (connector pre-training: twice this).")
    lr_factors: tuple[float, ...] = option(
        (1 / 3, 1.0, 3.0), "Each regime's learning-rate grid: its centre rate times these.", sep=","
    )
    regimes: tuple[str, ...] = option(REGIMES, "Regimes to finetune (ln and full are required).", sep=",")
    lora_rank: int = at_least(1, 1, "LoRA rank (1 gives the paper's LoRA share at this shape).")
    probe_n: int = at_least(8, 32, "Questions per model in the claims' probes.")
    bootstrap: int = at_least(10, 200, "Bootstrap resamples of the claims' intervals.")
    parallel: int = at_least(1, 2, "Sweep runs at once, each in its own process.")
    centre_lrs: dict[str, float] = option(
        help="A regime's centre learning rate, e.g. ln=0.01 (repeatable; others keep their defaults).",
        default_factory=lambda: dict(CENTRE_LRS),
        flags=("--centre-lr",),
        metavar="REGIME=LR",
    )
    pretrain: bool = option(
        False, "Pre-train the vision tower and the LLM in the run, not the shipped ones.", switch=True
    )
    llm: str | None = option(None, "Start from this text LLM (HF id or directory), not the shipped one.")
    vision: str | None = option(None, "Start from this CLIP vision tower instead of the shipped one.")
    online: bool = option(False, "Allow downloading --llm / --vision.", switch=True)
    data: str | None = option(
        None,
        "Train on this LLaVA-format JSON/JSONL (questions with short answers), not the synthetic shapes.",
    )
    eval_data: str | None = option(None, "With --data: the held-out questions every model is scored on.")
    val_data: str | None = option(
        None,
        "With --data: validation questions that pick the learning rates (default: --val-fraction of it).",
    )
    val_fraction: float = ranged(
        0.05,
        0,
        1,
        lo_open=True,
        hi_open=True,
        help="With --data and no --val-data: share of its images held out.",
    )
    pretrain_data: str | None = option(
        None, "With --data: captions for the connector stage (default: the training questions)."
    )
    image_folder: str | None = option(None, "With --data: folder the records' images are relative to.")
    template: str = option("chat", "Chat template of every stage (lnprobe train --help lists them).")
    text_eval: str | None = option(
        None,
        "Held-out text for the forgetting measure: a .txt / JSONL file or python-docs (default: the "
        "synthetic task's text corpus; none with --data).",
    )
    pick_once: bool = option(
        False,
        "lnprobe study: sweep the learning rates on the first seed only; later seeds train at its picks.",
        switch=True,
    )
    keep_checkpoints: bool = option(
        False,
        "Keep every checkpoint's weights (by default only the picked runs, base and assembled keep theirs).",
        switch=True,
    )

    def __post_init__(self) -> None:
        # a partial mapping (`--centre-lr ln=0.02`) changes those regimes only
        object.__setattr__(self, "centre_lrs", {**CENTRE_LRS, **self.centre_lrs})
        validate(self)
        if not self.lr_factors or not all(f > 0 for f in self.lr_factors):
            raise InputError(f"--lr-factors must be positive numbers, got {self.lr_factors}")
        if not self.regimes or len(set(self.regimes)) != len(self.regimes):
            raise InputError(f"--regimes must be distinct and non-empty, got {self.regimes}")
        for needed in ("ln", "full"):
            if needed not in self.regimes:
                raise InputError(f"--regimes must include {needed!r} (the claims compare ln with full)")
        if self.pretrain and (self.llm or self.vision):
            raise InputError(
                "--pretrain pre-trains both backbones; it cannot be combined with --llm / --vision"
            )
        self._check_data()
        bad = {k: v for k, v in self.centre_lrs.items() if not 0 < v < float("inf")}
        if bad:
            raise InputError(f"--centre-lr must be positive numbers, got {bad}")
        missing = [r for r in self.regimes if r not in self.centre_lrs]
        if missing:
            raise InputError(f"no centre learning rate for regime(s) {', '.join(missing)}")

    def _check_data(self) -> None:
        from lnprobe.data.templates import TEMPLATES

        TEMPLATES.get(self.template)  # an unknown name: one line listing the known ones
        extra = [f for f in ("eval_data", "val_data", "pretrain_data", "image_folder") if getattr(self, f)]
        if extra and not self.data:
            flags = ", ".join("--" + f.replace("_", "-") for f in extra)
            raise InputError(f"{flags} need(s) --data (the synthetic shapes make their own)")
        if self.data and not self.eval_data:
            raise InputError("--data needs --eval-data (the held-out questions every model is scored on)")
        if self.image_folder and not Path(self.image_folder).is_dir():
            raise InputError(f"--image-folder {self.image_folder}: no such directory")

    @property
    def synthetic(self) -> bool:
        """Whether the run makes its own synthetic shapes task (no --data)."""
        return not self.data

    def lrs(self, regime: str) -> list[float]:
        return [float(f"{self.centre_lrs[regime] * f:.3g}") for f in self.lr_factors]


SMOKE = dict(
    images=60,
    vision_steps=4,
    text_steps=4,
    connector_steps=4,
    finetune_steps=4,
    lr_factors=(1.0,),
    probe_n=8,
    bootstrap=10,
    parallel=1,
)
"""A seconds-long miniature for tests and notebooks: every stage runs, nothing learns."""
