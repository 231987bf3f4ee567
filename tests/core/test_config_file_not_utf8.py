"""A config file that is not UTF-8 text (saved as Latin-1 / cp1252 by an editor, or an image given to --config by
mistake) ended the command with a UnicodeDecodeError traceback; it is refused as the unreadable YAML is, naming the
file, with exit code 2."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import ConfigError, load_config

from support.cli import run_cli


@pytest.mark.parametrize("content", [b"run:\n  name: caf\xe9\n", b"\x89PNG\r\n\x1a\n\x00\x00"])
def test_a_file_that_is_not_utf8_is_refused_naming_it(tmp_path, content):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=rf"config file {path} cannot be read as YAML: 'utf-8' codec can't decode"):
        load_config(path)
    code, _, err = run_cli(["config", "show", "--config", str(path)])
    assert code == 2 and f"config file {path} cannot be read" in err, err
