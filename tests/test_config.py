import json
from dataclasses import dataclass

import pytest

from lnprobe.config import CONFIG_FILE, from_dict, save_config
from lnprobe.errors import InputError


@dataclass(frozen=True)
class Demo:
    lr: float = 1e-3
    seed: int = 0


def test_save_config_has_provenance(tmp_path):
    path = save_config(Demo(lr=0.5), tmp_path, seed=7)
    assert path.name == CONFIG_FILE
    record = json.loads(path.read_text())
    assert record["config"] == {"lr": 0.5, "seed": 0}
    prov = record["provenance"]
    assert prov["seed"] == 7
    assert prov["versions"]["torch"] and prov["versions"]["transformers"]
    assert "git_sha" in prov and "git_dirty" in prov


def test_from_dict_round_trip_and_unknown_fields():
    assert from_dict(Demo, {"lr": 0.1}) == Demo(lr=0.1)
    with pytest.raises(InputError, match="run.json: unknown field.*bogus"):
        from_dict(Demo, {"bogus": 1}, source="run.json")
