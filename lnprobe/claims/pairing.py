"""Which LN seed goes with which fully-finetuned seed in the claims' paired tests.

A training run records its seed (`lnprobe_config.json`); a checkpoint inside a run (`RUN/checkpoints/...`)
or a run directory finds it there. `--pair auto` pairs by that seed when every checkpoint of both sides
has one and the two sides hold the same seeds, else by order when the counts match (`--ln` i with `--full`
i; said in the output), else leaves them unpaired (a Welch comparison of the two sides' means). `--pair
seed` and `--pair order` insist (a mismatch is bad input); `--pair none` never pairs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lnprobe.errors import InputError


@dataclass(frozen=True)
class Pairing:
    pairs: list[tuple[str, str]] | None  # (ln name, full name), or None: unpaired
    how: str  # one line for the output


def training_seed(spec: str, run: str | None = None) -> int | None:
    """The seed a checkpoint was trained with, from its run's lnprobe_config.json (None when unknown)."""
    from lnprobe.models.load import resolve_run

    candidates = [Path(run)] if run else []
    path = Path(resolve_run(spec))
    candidates += [path, path.parent.parent] if path.parent.name == "checkpoints" else [path]
    for folder in candidates:
        config = folder / "lnprobe_config.json"
        if config.is_file():
            try:
                seed = json.loads(config.read_text()).get("config", {}).get("seed")
            except (json.JSONDecodeError, AttributeError):
                return None
            return seed if isinstance(seed, int) else None
    return None


def pair_seeds(cfg) -> Pairing:
    """The pairing of `cfg.seeds('ln')` with `cfg.seeds('full')` (see the module's docstring)."""
    ln, full = cfg.seeds("ln"), cfg.seeds("full")
    if len(ln) == 1 and len(full) == 1:
        return Pairing([(*ln, *full)], "one seed per side")
    if cfg.pair == "none":
        return Pairing(None, "unpaired (--pair none)")
    seeds = {
        name: training_seed(spec, runs[i] if runs else None)
        for which, runs in (("ln", cfg.ln_runs), ("full", cfg.full_runs))
        for i, (name, spec) in enumerate(cfg.seeds(which).items())
    }
    by_seed = _by_seed(ln, full, seeds)
    if cfg.pair in ("auto", "seed") and by_seed:
        return Pairing(by_seed, "paired by training seed")
    if cfg.pair == "seed":
        raise InputError(
            "--pair seed: the LN and full checkpoints cannot be paired by training seed (seeds "
            + ", ".join(f"{n}={seeds[n]}" for n in (*ln, *full))
            + "); give one checkpoint per seed on each side, or --pair order"
        )
    if len(ln) == len(full):
        return Pairing(list(zip(ln, full, strict=True)), "paired by order (--ln i with --full i)")
    return Pairing(None, f"unpaired: {len(ln)} LN and {len(full)} full seeds cannot be paired")


def _by_seed(ln: dict, full: dict, seeds: dict) -> list[tuple[str, str]] | None:
    a = {seeds[n]: n for n in ln}
    b = {seeds[n]: n for n in full}
    if None in a or None in b or len(a) != len(ln) or len(b) != len(full) or set(a) != set(b):
        return None
    return [(a[s], b[s]) for s in sorted(a)]
