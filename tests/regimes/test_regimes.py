"""Every regime trains exactly its parameter set; ln/ln-simp match PEFT's LN tuning parameter for
parameter; applying a regime copies no module; gradients reach exactly the trainable set."""

import re
import warnings

import pytest
import torch
from peft import LNTuningConfig, get_peft_model
from peft.utils.constants import TRANSFORMERS_MODELS_TO_LNTUNING_TARGET_MODULES_MAPPING as PEFT_LN_TARGETS
from transformers import LlavaConfig, LlavaForConditionalGeneration, Phi3Config

from lnprobe.errors import InputError, SitesError
from lnprobe.models import TinyConfig, build_tiny
from lnprobe.regimes import REGIMES, RegimeOptions, apply_regime, resolve_regime
from tests.conftest import SMALL_TEXT

L = TinyConfig().num_layers
LM = "model.language_model"
CONNECTOR = {"model.multi_modal_projector.linear_1.weight", "model.multi_modal_projector.linear_1.bias"}
NORMS = {
    f"{LM}.layers.{i}.{n}.weight" for i in range(L) for n in ("input_layernorm", "post_attention_layernorm")
}
NORMS |= {f"{LM}.norm.weight"}
EMBED_HEAD = {f"{LM}.embed_tokens.weight", "lm_head.weight"}
QV = {f"{LM}.layers.{i}.self_attn.{p}_proj.weight" for i in range(L) for p in "qv"}
MLP = {f"{LM}.layers.{i}.mlp.{p}_proj.weight" for i in range(L) for p in ("gate", "up", "down")}
ATTN = {f"{LM}.layers.{i}.self_attn.{p}_proj.weight" for i in range(L) for p in "qkvo"}

EXPECTED = {
    "ln-simp": NORMS,
    "ln": NORMS | CONNECTOR | EMBED_HEAD,
    "connector": CONNECTOR,
    "attn-qv": QV | CONNECTOR,
    "attn-mlp": MLP | CONNECTOR,
    "full": NORMS | CONNECTOR | EMBED_HEAD | ATTN | MLP,
}


def trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("regime", sorted(EXPECTED))
def test_exact_trainable_names(tiny, regime):
    applied = apply_regime(tiny[0], regime)
    assert set(applied.trainable) == EXPECTED[regime]
    assert trainable(applied.model) == EXPECTED[regime]


def test_lora_trainable_names(tiny):
    applied = apply_regime(tiny[0], "lora", RegimeOptions(lora_rank=4))
    prefix = "base_model.model."
    linears = {f"{LM}.layers.{i}.self_attn.{p}_proj" for i in range(L) for p in "qkvo"}
    linears |= {f"{LM}.layers.{i}.mlp.{p}_proj" for i in range(L) for p in ("gate", "up", "down")}
    lora = {f"{prefix}{m}.lora_{ab}.default.weight" for m in linears for ab in "AB"}
    assert set(applied.trainable) == lora | {prefix + n for n in CONNECTOR}


def test_lora_never_wraps_vision_tower_or_head(tiny):
    applied = apply_regime(tiny[0], "lora")
    wrapped = {n for n, m in applied.model.named_modules() if hasattr(m, "lora_A")}
    assert wrapped and all(".language_model.layers." in n for n in wrapped)
    a = applied.model.get_submodule(f"base_model.model.{LM}.layers.0.self_attn.q_proj").lora_A["default"]
    assert a.weight.shape[0] == 32  # the paper's rank by default
    assert applied.model.peft_config["default"].lora_alpha == 64


def _peft_ln_trainable(model, targets=None) -> set[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model = get_peft_model(model, LNTuningConfig(target_modules=targets))
    return {
        n.removeprefix("base_model.model.").replace(".ln_tuning_layers.default", "")
        for n in trainable(peft_model)
    }


def test_ln_equals_peft_llava_default(tiny):
    peft_names = _peft_ln_trainable(build_tiny()[0])  # PEFT's default llava targets
    assert PEFT_LN_TARGETS["llava"]  # the mapping the default comes from
    assert set(apply_regime(tiny[0], "ln").trainable) == peft_names


def test_ln_simp_equals_peft_on_llm_norms(tiny):
    targets = r".*language_model.*\.(input_layernorm|post_attention_layernorm|norm)$"
    peft_names = _peft_ln_trainable(build_tiny()[0], targets)
    assert set(apply_regime(tiny[0], "ln-simp").trainable) == peft_names


@pytest.mark.parametrize("regime", [r for r in REGIMES.names() if not resolve_regime(r).wraps])
def test_no_module_copied(tiny, regime):
    model = tiny[0]
    modules_before = {n: id(m) for n, m in model.named_modules()}
    storage_before = {n: p.data_ptr() for n, p in model.named_parameters()}
    applied = apply_regime(model, regime)
    assert applied.model is model
    assert {n: id(m) for n, m in model.named_modules()} == modules_before
    assert {n: p.data_ptr() for n, p in model.named_parameters()} == storage_before


@pytest.mark.parametrize("regime", REGIMES.names())
def test_contract_grads_reach_exactly_the_trainable_set(tiny, batch, regime):
    applied = apply_regime(tiny[0], regime, RegimeOptions(lora_rank=4))
    vision = applied.sites.vision_tower + "."
    assert not any(n.startswith(vision) for n in applied.trainable)
    applied.model(**batch).loss.backward()
    with_grad = {n for n, p in applied.model.named_parameters() if p.grad is not None}
    assert with_grad == set(applied.trainable)
    assert all(
        torch.isfinite(p.grad).all() for n, p in applied.model.named_parameters() if p.grad is not None
    )


@pytest.mark.parametrize("lm", ["mistral", "qwen2"])
def test_regimes_on_other_decoders(lm):
    for regime in ("ln", "ln-simp"):
        model, _ = build_tiny(TinyConfig(lm=lm))
        names = set(apply_regime(model, regime).trainable)
        assert names >= NORMS and (regime == "ln") == (names >= EMBED_HEAD)
    qwen_or_mistral, _ = build_tiny(TinyConfig(lm=lm))
    qv = set(apply_regime(qwen_or_mistral, "attn-qv").trainable)
    expected = QV | CONNECTOR
    if lm == "qwen2":  # Qwen2 q/k/v projections carry biases
        expected |= {n.replace(".weight", ".bias") for n in QV}
    assert qv == expected


def test_unknown_regime():
    with pytest.raises(InputError, match="unknown regime 'layernorm'"):
        apply_regime(build_tiny()[0], "layernorm")


def test_fused_attention_has_no_qv_for_attn_qv(tiny):
    config = LlavaConfig(
        vision_config=tiny[0].config.vision_config,
        text_config=Phi3Config(**SMALL_TEXT),
        image_token_id=4,
    )
    phi3 = LlavaForConditionalGeneration(config)  # Phi-3 fuses q/k/v into qkv_proj
    assert len(apply_regime(phi3, "ln-simp").trainable) == 2 * 2 + 1
    with pytest.raises(SitesError, match="attn-qv: .*has no separate q_proj"):
        apply_regime(phi3, "attn-qv")


def test_bad_lora_options():
    with pytest.raises(InputError, match="--lora-rank"):
        RegimeOptions(lora_rank=0)


# ---- atoms and compositions ------------------------------------------------------------------------------

HEAD, EMBED = {"lm_head.weight"}, {f"{LM}.embed_tokens.weight"}
PEFT = "base_model.model."
LORA_LINEARS = {f"{LM}.layers.{i}.self_attn.{p}_proj" for i in range(L) for p in "qkvo"} | {
    f"{LM}.layers.{i}.mlp.{p}_proj" for i in range(L) for p in ("gate", "up", "down")
}
LORA = {f"{PEFT}{m}.lora_{ab}.default.weight" for m in LORA_LINEARS for ab in "AB"}
# Each atom's exact set by name (`lora` on a wrapped model: the other atoms' names gain PEFT's prefix).
ATOM_SETS = {
    "norms": NORMS,
    "connector": CONNECTOR,
    "embed": EMBED,
    "head": HEAD,
    "attn-qv": QV,
    "attn-mlp": MLP,
    "full": NORMS | CONNECTOR | EMBED_HEAD | ATTN | MLP,
}
PAPER_PRESETS = {
    "lora-paper": LORA | {PEFT + n for n in CONNECTOR | EMBED_HEAD},
    "attn-qv-paper": QV | CONNECTOR | EMBED_HEAD,
    "attn-mlp-paper": MLP | CONNECTOR | EMBED_HEAD,
}


def test_every_atom_and_preset_is_covered():
    from lnprobe.regimes import ATOMS

    assert set(ATOMS.names()) == {*ATOM_SETS, "lora"}
    assert set(REGIMES.names()) == {*EXPECTED, "lora", *PAPER_PRESETS}


@pytest.mark.parametrize("atom", ["norms", "embed", "head"])  # atoms that are no preset's name
def test_atom_alone(atom):
    assert set(apply_regime(build_tiny()[0], atom).trainable) == ATOM_SETS[atom]


@pytest.mark.parametrize(
    "pair",
    [
        (a, b)
        for i, a in enumerate(ATOM_SETS)
        for b in list(ATOM_SETS)[i + 1 :]
        if "full" not in (a, b)  # `full` combines with nothing (tested below)
    ],
    ids="+".join,
)
def test_composition_trains_the_union_of_its_atoms(pair):
    a, b = pair
    expected = ATOM_SETS[a] | ATOM_SETS[b]
    assert set(apply_regime(build_tiny()[0], f"{a}+{b}").trainable) == expected
    assert set(apply_regime(build_tiny()[0], f"{b}+{a}").trainable) == expected  # order does not matter


@pytest.mark.parametrize("other", ["norms", "connector", "embed", "head"])
def test_lora_atom_composes(other):
    applied = apply_regime(build_tiny()[0], f"lora+{other}", RegimeOptions(lora_rank=4))
    assert set(applied.trainable) == LORA | {PEFT + n for n in ATOM_SETS[other]}


@pytest.mark.parametrize("preset", sorted(PAPER_PRESETS))
def test_paper_presets(preset):
    applied = apply_regime(build_tiny()[0], preset, RegimeOptions(lora_rank=4))
    assert set(applied.trainable) == PAPER_PRESETS[preset]


def test_presets_equal_their_compositions():
    from lnprobe.regimes import resolve_regime

    for name in REGIMES.names():
        atoms = "+".join(REGIMES.get(name).atoms)
        assert resolve_regime(name).atom_names == resolve_regime(atoms).atom_names
        options = RegimeOptions(lora_rank=4)
        preset = apply_regime(build_tiny()[0], name, options).trainable
        assert preset == apply_regime(build_tiny()[0], atoms, options).trainable
    # the paper's readings add exactly embeddings and head to today's presets
    assert resolve_regime("lora-paper").atom_names == ("lora", "connector", "embed", "head")
    assert resolve_regime("ln").atom_names == ("norms", "connector", "embed", "head")


@pytest.mark.parametrize(
    "regime, fragment",
    [
        ("+", "empty atom at position 1"),
        ("", "empty regime name"),
        ("lora+", "empty atom at position 2"),
        ("norms++head", "empty atom at position 2"),
        ("norms+norms", "duplicate atom 'norms'"),
        ("norms+head+norms", "duplicate atom 'norms'"),
        ("norms+bogus", "unknown atom 'bogus'"),
        ("ln+head", "unknown atom 'ln' (a preset"),
        ("full+norms", "atom 'full' combines with no other atom"),
        ("Norms", "unknown regime 'Norms'"),
    ],
)
def test_bad_compositions_exit_2_with_one_line(capsys, regime, fragment):
    from lnprobe import cli

    assert cli.main(["params", "tiny", "-r", regime]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1 and lines[0].startswith("lnprobe: error: "), err
    assert fragment in lines[0]
    with pytest.raises(InputError, match="regime"):
        apply_regime(build_tiny()[0], regime)


def test_bad_composition_fails_train_and_sweep_before_any_work(capsys, tmp_path):
    from lnprobe import cli

    data = tmp_path / "d.json"
    data.write_text('[{"id": "x", "image": "a.png", "conversations": []}]')
    for argv in (
        ["train", "--data", str(data), "--regime", "norms+norms", "--out", str(tmp_path / "run")],
        ["sweep", "--data", str(data), "--regimes", "ln,lora+bogus", "--out", str(tmp_path / "sw")],
    ):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert ("'norms'" in err or "'bogus'" in err) and err.count("\n") == 1
    assert not (tmp_path / "run").exists() and not (tmp_path / "sw").exists()


def test_composed_delta_round_trips_and_exports(tiny_dir, tmp_path):
    """A delta saved under a composition re-applies it by name on load; an LN-tuning-shaped composition
    exports to PEFT, a LoRA one is refused."""
    from lnprobe.checkpoints.export import export_peft
    from lnprobe.models import load
    from tests.checkpoints.test_export import make_delta

    make_delta(tiny_dir, "norms+head", tmp_path / "nh")
    tuned = load(tmp_path / "nh")
    assert tuned.regime == "norms+head"
    base = dict(load(tiny_dir).model.named_parameters())
    changed = {n for n, p in tuned.model.named_parameters() if not torch.equal(p, base[n])}
    assert changed == NORMS | HEAD
    export_peft(tmp_path / "nh", tmp_path / "peft")
    assert (tmp_path / "peft" / "adapter_config.json").is_file()
    make_delta(tiny_dir, "lora+connector+embed+head", tmp_path / "lp")
    assert load(tmp_path / "lp").regime == "lora+connector+embed+head"
    with pytest.raises(InputError, match="no PEFT LN-tuning form"):
        export_peft(tmp_path / "lp", tmp_path / "peft2")


def test_norm_subsets_select_exactly_their_norms(tiny):
    """`norms:KIND[@A-B]` (issue 18): each subset against ModelSites' own lists; the kinds together are
    `norms`; subsets compose with other atoms and overlap without duplicates."""
    from lnprobe.models import resolve_sites

    sites = resolve_sites(tiny[0])

    def trained(regime):
        model, _ = build_tiny(TinyConfig(seed=0))
        return set(apply_regime(model, regime).trainable)

    def weights(names):
        return {f"{n}.weight" for n in names}

    assert trained("norms:input") == weights(sites.input_norms)
    assert trained("norms:post@1") == weights([sites.post_attention_norms[1]])
    assert trained("norms@1-2") == weights([n for i in (1, 2) for n in sites.layer_norms[i]])
    assert trained("norms:final") == weights([sites.final_norm])
    assert trained("norms:input+norms:post+norms:final") == trained("norms")
    assert trained("norms:input@0+connector") == weights([sites.input_norms[0]]) | trained("connector")
    assert trained("norms+norms:input") == trained("norms")  # overlapping atoms: the union
    assert resolve_regime("norms:input@0-7").summary == "input norms of layers 0-7"


@pytest.mark.parametrize(
    ("regime", "fragment"),
    [
        ("norms:mlp", "unknown norm kind 'mlp'"),
        ("norms@3-1", "empty layer range 3-1"),
        ("norms:final@2", "the final norm takes no layer range"),
        ("norms@4", "the model has 4 decoder layers (0-3)"),
        ("norms:input+norms:input", "duplicate atom 'norms:input'"),
    ],
)
def test_bad_norm_subsets(regime, fragment):
    model, _ = build_tiny(TinyConfig(seed=0))
    with pytest.raises(InputError, match=re.escape(fragment)):
        apply_regime(model, regime)


def test_a_norm_subset_delta_round_trips(tiny_dir, tmp_path):
    from lnprobe.models import load
    from tests.checkpoints.test_export import make_delta

    make_delta(tiny_dir, "norms:post@2-3", tmp_path / "d")
    tuned = load(tmp_path / "d")
    base = dict(load(tiny_dir).model.named_parameters())
    changed = {n for n, p in tuned.model.named_parameters() if not torch.equal(p, base[n])}
    assert tuned.regime == "norms:post@2-3"
    assert changed == {f"{tuned.sites.post_attention_norms[i]}.weight" for i in (2, 3)}
