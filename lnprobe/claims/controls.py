"""Planted controls for the verdict engine: tiny LLaVA checkpoints where each of the paper's three claims
holds, or fails, by construction, so `lnprobe claims` can be shown known answers.

One planted base serves every scenario; a scenario adds an LN-tuned delta (regime `ln`: only norms,
connector, embeddings and head differ from the base), a "fully finetuned" checkpoint and two training-run
directories holding gradient traces. Each claim is planted in parameters the other claims' statistics
barely see, so one `lnprobe claims` run per scenario judges all three:

1. cross-layer similarity (LN vs full, decoder-layer outputs):
   - holds: `silence_layers` zeroes every layer's residual writes (attention `o_proj`, MLP `down_proj`) in
     the full model, so each decoder layer returns its input and all layer outputs are the same matrix:
     cross-layer CKA is exactly 1, the maximum, and the LN model (whose layers still write) is lower.
   - fails: `amplify_layers` multiplies those writes by a large factor in the full model, so each layer's
     own write dominates the residual stream and consecutive layer outputs share little, while the LN
     model of this scenario shrinks most of its norm weights (see 3), which shrinks its layers' writes
     and makes its layers more alike: LN higher than full.
2. norm-gradient variance (LN vs full), on both of the engine's paths:
   - training traces (what `lnprobe train --gradvar-every` records; preferred when given): Gaussian noise
     of known standard deviation around a non-zero mean (`write_gradient_trace`), 0.1 for LN and 1 for
     full where the claim holds, swapped where it fails. The variance tr(Σ)/p is then sd² by construction
     (1e-2 vs 1: a 100x ratio, far beyond the sampling error of a few dozen samples); the mean tests that
     the engine measures spread, not size.
   - offline per-example gradients (no traces given): `scale_head` multiplies the output head by a small
     factor c in the model meant to have the lower variance (LN where the claim holds, full where it
     fails). The logits then nearly vanish, so the softmax is nearly uniform and the loss's gradient with
     respect to every hidden state, hence to every norm weight, is c times a bounded quantity: the
     per-example norm-gradient variance falls by ~c² (1e-6), far more than the other plants move it. The
     head changes no activation, so claims 1 and 3 do not see it.
3. domain adaptation (LN vs base, image-vs-text gap after each decoder norm):
   - the base (`plant_modality_offset`) adds a large constant to the connector's output on a block of
     hidden dimensions D and zeroes the word embeddings there, so at every norm's input image tokens
     carry the offset on D where text tokens carry little (the residual stream keeps the offset through
     every layer).
   - holds: the LN model multiplies every decoder norm's weight on D by a small factor
     (`scale_norm_dims`); after the norm the planted part of the gap (per dimension, in units of the text
     tokens' RMS, which D hardly contributes to) is gone, so the gap shrinks at every norm. It shrinks by
     ~10-15 %, not to 0: the tiny base's image tokens also differ from text tokens in ways no per-dimension
     weight shared by both modalities can undo (a gap of ~1 before any plant); the sign test needs the
     direction at every norm, not the size.
   - fails: the LN model shrinks the weights on every dimension *outside* D instead; the offset is kept
     while the text RMS falls, so the gap widens several-fold at every norm.

The sign test needs at least 8 of the tiny model's 9 decoder norms to agree (p < 0.05); the planted
factors make all 9 agree.

Two more outcomes, over two seeds each (`lnprobe claims --ln A --ln B --full C --full D`):

- no effect beyond δ (`build_null_scenario`): per seed, the LN model *is* the base (its norms unchanged,
  saved as an `ln` delta), the "fully finetuned" model is a copy of it, and both training runs hold the same
  gradient trace: every per-seed difference is exactly 0 on every claim, so each pooled 90 % interval is
  [0, 0], inside any margin.
- inconclusive (too few seeds): the seed where every claim holds paired with the seed where every claim
  fails (the two scenarios above): two per-seed differences of opposite sign, whose t interval on one
  degree of freedom contains 0 and leaves the margin; the power statement then asks for more seeds.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lnprobe.models.sites import ModelSites

OFFSET_DIMS = 16  # the block D of hidden dimensions that carries the image tokens' planted offset
OFFSET_SCALE = 8.0  # the offset, in units of the RMS of the text-token embeddings
NORM_FACTOR = 0.05  # how much the LN model's norm weights shrink on (or off) D
AMPLIFY = 8.0  # the full model's layer writes where the similarity claim must fail
HEAD_SCALE = 1e-3  # the output head of the model meant to have the lower norm-gradient variance
TRACE_SD = {True: (0.1, 1.0), False: (1.0, 0.1)}  # (LN, full) gradient noise where the claim holds / fails


def offset_dims(hidden_size: int) -> list[int]:
    """The hidden dimensions D that carry the planted image offset (the first OFFSET_DIMS, at most half)."""
    return list(range(min(OFFSET_DIMS, hidden_size // 2)))


def _last_linear(module: nn.Module) -> nn.Linear:
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("the connector has no linear layer")
    return linears[-1]


@torch.no_grad()
def plant_modality_offset(model: nn.Module, sites: ModelSites, dims: list[int], scale: float) -> float:
    """Add `scale` x (text-embedding RMS) to the connector's output bias on `dims` and zero the word
    embeddings there: every image token then carries that constant on D, where text tokens start empty.
    Returns the offset added."""
    embed = model.get_submodule(sites.embed_tokens).weight  # [vocab, d_model]
    offset = scale * float(embed.float().pow(2).mean().sqrt())
    linear = _last_linear(model.get_submodule(sites.connector))
    if linear.bias is None:
        raise ValueError("the connector's last linear layer has no bias to carry the offset")
    linear.bias[dims] += offset
    embed[:, dims] = 0.0
    return offset


@torch.no_grad()
def scale_norm_dims(
    model: nn.Module, sites: ModelSites, dims: list[int], factor: float, inside: bool
) -> None:
    """Multiply the weight of every decoder norm (inside the layers and the final one) by `factor` on
    `dims` (inside=True) or on every other dimension (inside=False)."""
    for name in sites.lm_norms():
        weight = model.get_submodule(name).weight  # [d_model]
        mask = torch.zeros(weight.shape[0], dtype=torch.bool)
        mask[dims] = True
        weight[mask if inside else ~mask] *= factor


def _writes(model: nn.Module, sites: ModelSites) -> list[nn.Linear]:
    """The projections by which each decoder layer writes into the residual stream: the last linear layer
    of its attention (o_proj) and of its MLP (down_proj)."""
    return [_last_linear(model.get_submodule(part)) for part in (*sites.attn, *sites.mlp)]


@torch.no_grad()
def silence_layers(model: nn.Module, sites: ModelSites) -> None:
    """Zero every decoder layer's residual writes: each layer becomes the identity map."""
    for linear in _writes(model, sites):
        linear.weight.zero_()
        if linear.bias is not None:
            linear.bias.zero_()


@torch.no_grad()
def amplify_layers(model: nn.Module, sites: ModelSites, factor: float) -> None:
    """Multiply every decoder layer's residual writes by `factor`."""
    for linear in _writes(model, sites):
        linear.weight *= factor
        if linear.bias is not None:
            linear.bias *= factor


@torch.no_grad()
def scale_head(model: nn.Module, sites: ModelSites, factor: float) -> None:
    """Multiply the output head by `factor` (the logits scale by it; no activation changes)."""
    for param in model.get_submodule(sites.lm_head).parameters():
        param *= factor


def write_gradient_trace(
    run_dir: str | Path, sd: float, samples: int = 32, numel: int = 64, mean: float = 3.0, seed: int = 0
) -> Path:
    """A training-run directory whose norm-gradient trace is `samples` draws of mean + sd x N(0, I) over
    `numel` parameters: the variance tr(Σ)/p the engine estimates is sd² by construction."""
    from safetensors.torch import save_file

    from lnprobe.probes.gradvar.stats import TRACE_FILE

    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    trace = mean + sd * torch.randn(samples, numel, generator=gen)  # [samples, norm params]
    save_file({"norm_grads": trace.float()}, str(run / TRACE_FILE))
    return run


def _save_hf(model: nn.Module, processor, like: Path, out: Path) -> Path:
    """Save `model` (+ processor and lnprobe's config, copied from the checkpoint it came from)."""
    from lnprobe.io import Output
    from lnprobe.models.hf import quiet_transformers

    with Output(out, "claims controls").build() as tmp, quiet_transformers():
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        for extra in ("lnprobe_config.json",):
            if (like / extra).is_file():
                shutil.copy(like / extra, tmp / extra)
    return out


def _save_ln_delta(model: nn.Module, base: Path, out: Path) -> Path:
    """Save the `ln` regime's tensors of `model` as an lnprobe delta of `base`."""
    from lnprobe.checkpoints.delta import DeltaInfo, fingerprint, save_delta
    from lnprobe.regimes import apply_regime

    applied = apply_regime(model, "ln")
    params = dict(applied.model.named_parameters())
    tensors = {n: params[n] for n in applied.trainable}
    info = DeltaInfo(base=str(base), base_fingerprint=fingerprint(base), regime="ln")
    return save_delta(out, tensors, info, overwrite=True)


def build_base(out: str | Path, seed: int = 0) -> Path:
    """The planted base: a tiny LLaVA whose image tokens carry a large offset on the dimensions D."""
    from lnprobe.models import load
    from lnprobe.models.tiny import TinyConfig, save_tiny

    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="lnprobe-controls-") as scratch:
        plain = save_tiny(Path(scratch) / "init", TinyConfig(seed=seed))
        loaded = load(plain)
        dims = offset_dims(loaded.model.config.text_config.hidden_size)
        offset = plant_modality_offset(loaded.model, loaded.sites, dims, OFFSET_SCALE)
        _save_hf(loaded.model, loaded.processor, plain, out)
    (out / "planted.json").write_text(json.dumps({"offset_dims": dims, "offset": offset}) + "\n")
    return out


@dataclass(frozen=True)
class Scenario:
    """Checkpoints for one `lnprobe claims` run where every claim holds (`holds`) or fails."""

    holds: bool
    base: Path
    ln: Path
    full: Path
    ln_run: Path
    full_run: Path

    def argv(self, data: str | Path, out: str | Path, traces: bool = True) -> list[str]:
        """`lnprobe claims` arguments for this scenario (the caller adds --n, --batch-size, ...); without
        `traces`, the engine takes offline per-example gradients."""
        argv = [
            "claims", "--base", str(self.base), "--ln", str(self.ln), "--full", str(self.full),
            "--data", str(data), "--out", str(out),
        ]  # fmt: skip
        return [*argv, "--ln-run", str(self.ln_run), "--full-run", str(self.full_run)] if traces else argv


def build_null_scenario(base: str | Path, out: str | Path, seed: int = 0) -> Scenario:
    """LN = base = full, one gradient trace for both runs: no claim can see a difference (see the module's
    docstring)."""
    from lnprobe.models import load

    base, out = Path(base), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    same = load(base)
    ln_dir = _save_ln_delta(same.model, base, out / "ln")
    full_dir = _save_hf(same.model, same.processor, base, out / "full")
    ln_run = write_gradient_trace(out / "ln-run", 0.5, seed=seed)
    full_run = write_gradient_trace(out / "full-run", 0.5, seed=seed)
    return Scenario(False, base, ln_dir, full_dir, ln_run, full_run)


def seeds_argv(scenarios: list[Scenario], data: str | Path, out: str | Path) -> list[str]:
    """`lnprobe claims` arguments judging several scenarios as seeds of one study (paired by order)."""
    argv = ["claims", "--base", str(scenarios[0].base), "--data", str(data), "--out", str(out)]
    for s in scenarios:
        argv += [
            "--ln",
            str(s.ln),
            "--full",
            str(s.full),
            "--ln-run",
            str(s.ln_run),
            "--full-run",
            str(s.full_run),
        ]
    return argv


SINK_SCALE = 1000.0  # the planted sink's embedding, in units of the embeddings' RMS norm per dimension


@torch.no_grad()
def plant_sink(model: nn.Module, sites: ModelSites, token_id: int, scale: float = SINK_SCALE) -> None:
    """Make `token_id`'s word embedding a massive activation: `scale` x the embeddings' RMS x √d along a
    fixed unit direction (outside the offset block D). The residual stream carries it through every decoder
    layer, while each layer's input norm rescales it, so the token sits at a norm ~`scale` x every other
    token's at every layer output and writes like an ordinary token: an attention sink's signature."""
    embed = model.get_submodule(sites.embed_tokens).weight  # [vocab, d_model]
    d = embed.shape[1]
    direction = torch.zeros(d, dtype=embed.dtype)
    direction[len(offset_dims(d)) :] = 1.0
    rms = float(embed.float().pow(2).mean().sqrt())
    embed[token_id] = scale * rms * d**0.5 * direction / direction.norm()


def build_scenario(
    base: str | Path, out: str | Path, holds: bool, seed: int = 0, sink_token: int | None = None
) -> Scenario:
    """LN delta, full checkpoint and gradient-trace runs over the planted `base` (see the module's
    docstring for what each plants and why the verdicts follow). `sink_token`: that token of the *full*
    model becomes an attention sink (`plant_sink`): where the similarity claim fails (the full model's
    amplified layers less alike than LN's), a kept sink makes the full model's layers look alike (CKA ~1)
    and flips the verdict to supported, which the sink rule must prevent."""
    from lnprobe.models import load

    base, out = Path(base), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dims = json.loads((base / "planted.json").read_text())["offset_dims"]

    ln = load(base)
    scale_norm_dims(ln.model, ln.sites, dims, NORM_FACTOR, inside=holds)
    if holds:
        scale_head(ln.model, ln.sites, HEAD_SCALE)
    ln_dir = _save_ln_delta(ln.model, base, out / "ln")

    full = load(base)
    if holds:
        silence_layers(full.model, full.sites)
    else:
        amplify_layers(full.model, full.sites, AMPLIFY)
        scale_head(full.model, full.sites, HEAD_SCALE)
    if sink_token is not None:
        plant_sink(full.model, full.sites, sink_token)
    full_dir = _save_hf(full.model, full.processor, base, out / "full")

    sd_ln, sd_full = TRACE_SD[holds]
    ln_run = write_gradient_trace(out / "ln-run", sd_ln, seed=seed)
    full_run = write_gradient_trace(out / "full-run", sd_full, seed=seed + 1)
    return Scenario(holds, base, ln_dir, full_dir, ln_run, full_run)
