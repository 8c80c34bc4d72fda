"""The command line: outputs, exit codes, and one-line errors for bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lnprobe import cli


def run(capsys, *args):
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, out, err, *fragments):
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lnprobe: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def test_params_json_at_7b(capsys):
    code, out, _ = run(capsys, "params", "llava-7b", "-r", "ln-simp", "-r", "ln", "--json")
    assert code == 0
    record = json.loads(out)
    reports = {r["regime"]: r for r in record["reports"]}
    assert reports["ln-simp"]["trainable"] == 266_240
    assert reports["ln"]["percent"] == pytest.approx(3.78, abs=0.01)
    assert record["provenance"]["versions"]["torch"]


def test_params_tables_on_a_checkpoint(capsys, tiny_dir):
    code, out, _ = run(capsys, "params", tiny_dir, "--dtype", "fp32")
    assert code == 0
    for word in ("full", "lora", "attn-qv", "attn-mlp", "ln-simp", "connector", "AdamW", "norms"):
        assert word in out


def test_params_bad_input(capsys, tmp_path):
    assert_one_line_error(*run(capsys, "params", "llava-7b", "-r", "layernorm"), "unknown regime 'layernorm'")
    assert_one_line_error(*run(capsys, "params", str(tmp_path / "nope")), "nope: no such directory")
    assert_one_line_error(*run(capsys, "params", "llava-7b", "--dtype", "fp64"), "unknown dtype 'fp64'")
    assert_one_line_error(*run(capsys, "params", "llava-7b", "--lora-rank", "0"), "--lora-rank")
    assert_one_line_error(*run(capsys, "params"), "Missing argument")
    assert_one_line_error(*run(capsys, "params", "llava-7b", "--bogus"), "--bogus")
    (tmp_path / "cfg.json").write_text('{"hidden_size": 4}')
    assert_one_line_error(*run(capsys, "params", str(tmp_path / "cfg.json")), "cfg.json", "model_type")


def test_demo_and_study_options_are_the_miniature_configs_fields(capsys, monkeypatch, tmp_path):
    """Every field of MiniatureConfig is a flag of `demo` and `study`; `--smoke` sets the smoke scale for
    the fields the flags leave at their defaults; `--centre-lr` changes the regimes it names only."""
    import lnprobe.miniature.demo
    import lnprobe.miniature.study
    from lnprobe.miniature.config import CENTRE_LRS, SMOKE, MiniatureConfig

    seen = {}
    monkeypatch.setattr(
        lnprobe.miniature.demo, "run_demo", lambda out, cfg, console: seen.update(demo=(out, cfg))
    )
    monkeypatch.setattr(
        lnprobe.miniature.study,
        "run_study",
        lambda out, cfg, seeds, progress: (
            seen.update(study=(out, cfg, seeds)) or {"accuracy": {}, "claims": {}}
        ),
    )
    argv = ["--smoke", "--finetune-steps", "7", "--centre-lr", "ln=0.5", "--regimes", "ln,full"]
    assert (
        run(capsys, "demo", *argv, "--seed", "3", "--keep-checkpoints", "--out", str(tmp_path / "d"))[0] == 0
    )
    out, cfg = seen["demo"]
    assert (
        out == tmp_path / "d" and cfg.seed == 3 and cfg.finetune_steps == 7 and cfg.regimes == ("ln", "full")
    )
    assert cfg.keep_checkpoints and not MiniatureConfig().keep_checkpoints  # kept only when asked
    assert cfg.centre_lrs == {**CENTRE_LRS, "ln": 0.5}
    assert cfg.images == SMOKE["images"] and cfg.lr_factors == SMOKE["lr_factors"]  # the smoke scale
    (tmp_path / "c.yaml").write_text("images: 80\nlora_rank: 2\n")
    assert (
        run(
            capsys,
            "study",
            "--config",
            str(tmp_path / "c.yaml"),
            "--seeds",
            "2",
            "--out",
            str(tmp_path / "s"),
        )[0]
        == 0
    )
    out, cfg, seeds = seen["study"]
    assert seeds == [0, 1] and cfg == MiniatureConfig(images=80, lora_rank=2)
    shown = run(capsys, "study", "--help")[1]
    assert "--seeds" in shown and "--finetune-steps" in shown and "--seed " not in shown  # one per seed


def test_model_without_norms_is_bad_input(capsys, tmp_path):
    (tmp_path / "bert.json").write_text(
        json.dumps(
            {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
        )
    )
    code, out, err = run(capsys, "params", str(tmp_path / "bert.json"))
    assert_one_line_error(code, out, err, "BertModel: could not find", "vision_tower")


def test_tiny_sites_and_regimes(capsys, tmp_path):
    out_dir = tmp_path / "t"
    code, out, _ = run(capsys, "tiny", str(out_dir), "--lm", "qwen2", "--layers", "2")
    assert (
        code == 0
        and (out_dir / "model.safetensors").is_file()
        and (out_dir / "lnprobe_config.json").is_file()
    )
    assert_one_line_error(*run(capsys, "tiny", str(out_dir)), "already exists", "--force")
    assert run(capsys, "tiny", str(out_dir), "--force", "--layers", "2", "--connector", "mlp2x_gelu")[0] == 0
    assert_one_line_error(*run(capsys, "tiny", str(tmp_path / "x"), "--lm", "gpt9"), "--lm", "gpt9")
    code, out, _ = run(capsys, "sites", str(out_dir), "--json")
    sites = json.loads(out)
    assert code == 0 and len(sites["layers"]) == 2 and sites["connector"] == "model.multi_modal_projector"
    code, out, _ = run(capsys, "regimes")
    assert code == 0 and "ln-simp" in out and "LayerNorm-simp" in out


def test_internal_error_exits_1(capsys, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("bug")

    monkeypatch.setattr("lnprobe.models.resolve_config", boom)
    code, _, err = run(capsys, "params", "llava-7b")
    assert code == 1 and "Traceback" in err and "internal error" in err


def test_help_and_console_script():
    exe = Path(sys.executable).with_name("lnprobe")
    done = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "params" in done.stdout
    bad = subprocess.run([str(exe), "params", "/no/such/dir"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and bad.stdout == ""


def test_data_synth_and_train_commands(capsys, tmp_path):
    data = tmp_path / "synth"
    assert run(capsys, "data", "synth", str(data), "--n", "30", "--seed", "1")[0] == 0
    assert_one_line_error(*run(capsys, "data", "synth", str(data)), "already exists", "--force")
    config = tmp_path / "train.yaml"
    config.write_text(
        f"data: {data / 'instruct.json'}\nregime: ln\nmax_steps: 3\nbatch_size: 4\nprogress: false\n"
    )
    out = tmp_path / "run"
    code, stdout, _ = run(
        capsys, "train", "--config", str(config), "--out", str(out), "--lr", "0.01", "--grad-ckpt", "off",
        "--eval-data", str(data / "eval.json"),
    )  # fmt: skip
    assert code == 0 and "trained 3 steps" in stdout
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert f"held-out loss {metrics[-1]['eval_loss']:.4f}" in stdout  # the last step's, as logged
    saved = json.loads((out / "lnprobe_config.json").read_text())["config"]
    assert (saved["regime"], saved["lr"], saved["grad_ckpt"], saved["max_steps"]) == ("ln", 0.01, "off", 3)
    assert (out / "checkpoints" / "step-000003" / "lnprobe_delta.json").is_file()


def test_train_bad_input(capsys, tmp_path):
    data = tmp_path / "d.json"
    data.write_text('[{"id": "x", "conversations": [{"from": "human", "value": "hi"}]}]')
    out = tmp_path / "run"
    assert_one_line_error(
        *run(capsys, "train", "--data", str(data), "--out", str(out)),
        "record 0 (id x): conversation has no assistant",
    )
    assert not out.exists()  # nothing written
    assert_one_line_error(*run(capsys, "train", "--data", str(tmp_path / "nope.json")), "nope.json")
    assert_one_line_error(
        *run(capsys, "train", "--data", str(data), "--regime", "lnn"), "unknown regime 'lnn'"
    )
    assert_one_line_error(
        *run(capsys, "train", "--data", str(data), "--template", "x"), "unknown template 'x'"
    )
    assert_one_line_error(*run(capsys, "train", "--data", str(data), "--batch-size", "0"), "--batch-size")
    assert_one_line_error(*run(capsys, "train"), "--data is required")
    (tmp_path / "bad.yaml").write_text("lr: [1, 2\n")
    assert_one_line_error(
        *run(capsys, "train", "--config", str(tmp_path / "bad.yaml")), "bad.yaml", "malformed"
    )


def test_sweep_command(capsys, tmp_path):
    data = tmp_path / "synth"
    assert run(capsys, "data", "synth", str(data), "--n", "20")[0] == 0
    common = [
        "sweep",
        "--data",
        str(data / "instruct.json"),
        "--out",
        str(tmp_path / "sw"),
        "--max-steps",
        "1",
        "--no-progress",
    ]
    code, out, _ = run(capsys, *common, "--regimes", "ln-simp", "--lrs", "1e-2,1e-3")
    assert code == 0 and "best lr: ln-simp" in out
    assert len(json.loads((tmp_path / "sw" / "sweep.json").read_text())["runs"]) == 2
    assert_one_line_error(*run(capsys, *common, "--lrs", "fast"), "--lrs", "comma-separated numbers")
    assert_one_line_error(*run(capsys, *common, "--regimes", "ln,bogus"), "unknown regime 'bogus'")


def test_similarity_compares_text_tokens_by_default_and_warns_on_all(capsys, tmp_path, tiny_dir):
    from lnprobe.data.synth import SynthConfig, write_synth

    data = write_synth(tmp_path / "d", SynthConfig(n=20, seed=0)) / "instruct.json"
    base = ["similarity", tiny_dir, "--data", str(data), "--n", "8", "--batch-size", "4", "--bootstrap", "10"]
    code, out, _ = run(capsys, *base, "--out", str(tmp_path / "text"))
    saved = json.loads((tmp_path / "text" / "similarity.json").read_text())
    assert code == 0 and "warning" not in out and saved["config"]["tokens"] == "text"
    code, out, _ = run(capsys, *base, "--tokens", "all", "--out", str(tmp_path / "all"))
    assert code == 0 and "warning: --tokens all mixes image and text tokens" in out
