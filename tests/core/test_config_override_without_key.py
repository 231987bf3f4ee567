"""`config explain train.lr =3` (a space before `=`: the shell gives `train.lr` and `=3`) said "unknown config key
''", naming neither the item nor the space: the keyless item is now named, with the form it should take."""
from __future__ import annotations

import pytest

from support.cli import run_cli


@pytest.mark.parametrize("command", [["config", "explain", "train.lr"], ["config", "show"]])
def test_an_override_with_no_key_is_named_with_the_space_that_split_it(command):
    code, out, err = run_cli([*command, "=3"])
    assert code == 2 and "'=3'" in err and "key=value" in err and "space" in err, err
    assert "unknown config key ''" not in err, err
