"""`--config ""` (an unset variable in a launch script: `--config "$CONFIG"`) was reported as "config file  is a
folder" (the empty path is the current folder): it now says the value is empty and names the profiles."""
from __future__ import annotations

import pytest

from mmlnb_dist.cli import main
from mmlnb_dist.config import ConfigError, load_config


@pytest.mark.parametrize("given", ["", "  "])
def test_an_empty_config_path_is_named_empty(given):
    with pytest.raises(ConfigError, match=r"--config is empty.*cpu-demo") as err:
        load_config(given)
    assert "folder" not in str(err.value)


def test_config_show_with_an_empty_config_exits_2_with_one_line(capsys):
    assert main(["config", "show", "--config", ""]) == 2
    err = capsys.readouterr().err
    assert "--config is empty" in err and "Traceback" not in err, err
