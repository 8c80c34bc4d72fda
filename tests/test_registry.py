import pytest

from lnprobe.errors import InputError
from lnprobe.registry import Registry


def test_register_get_and_order():
    reg: Registry[int] = Registry("thing")
    reg.add("b", 2)

    @reg.register("a")
    def a():
        return 1

    assert reg.names() == ["b", "a"]
    assert reg.get("a") is a and "b" in reg and len(reg) == 2


def test_duplicates_rejected():
    reg: Registry[int] = Registry("thing")
    reg.add("x", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.add("x", 2)


def test_unknown_name_lists_known():
    reg: Registry[int] = Registry("regime")
    reg.add("ln", 1)
    with pytest.raises(InputError, match=r"unknown regime 'nope' \(known: ln\)"):
        reg.get("nope")
