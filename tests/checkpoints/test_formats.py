"""The delta format is known to `lnprobe.models.load` whichever module a fresh interpreter imports first
(`lnprobe.checkpoints` registers it in `lnprobe.models.formats`; the package `lnprobe` imports it)."""

import subprocess
import sys

import pytest

from lnprobe.models.formats import FORMATS
from tests.checkpoints.test_export import make_delta


def test_the_delta_format_is_registered_once():
    assert FORMATS.names() == ["delta"]
    assert FORMATS.get("delta").marker == "lnprobe_delta.json"


def test_a_fresh_interpreter_loads_a_delta_through_models_load(tiny_dir, tmp_path):
    delta = tmp_path / "d"
    make_delta(tiny_dir, "ln-simp", delta)
    code = (
        "import sys\nfrom lnprobe.models import load\n"
        f"loaded = load({str(delta)!r})\n"
        "print(loaded.kind, loaded.regime, 'lnprobe.checkpoints.load' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["delta", "ln-simp", "True"]


def test_a_corrupt_delta_with_an_empty_error_message_is_still_one_line(tmp_path, monkeypatch):
    """safetensors can raise with no message: the line names the error's type (it used to crash)."""
    import types

    import safetensors.torch

    from lnprobe.checkpoints.delta import read_delta_tensors
    from lnprobe.errors import InputError

    def fail(path):
        raise ValueError("")

    monkeypatch.setattr(safetensors.torch, "load_file", fail)
    info = types.SimpleNamespace(tensors="delta.safetensors")
    with pytest.raises(InputError, match=r"delta\.safetensors: corrupt delta tensors \(ValueError\)$"):
        read_delta_tensors(tmp_path, info)
