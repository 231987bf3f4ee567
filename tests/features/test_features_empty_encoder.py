"""`features extract --encoder ""` (an unset shell variable, `--encoder "$ENC"`) extracted with the config's own
encoder without a word, into that encoder's folder: the empty name is now refused, naming the flag."""
from __future__ import annotations

import contextlib
import io

import pytest

from mmlnb_dist.cli import main


@pytest.mark.parametrize("name", ["", "  "])
def test_an_empty_encoder_name_is_refused_naming_the_flag(tmp_path, name):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as stop:
        main(["features", "extract", "--encoder", name, "--shards", str(tmp_path / "s"),
              "--out", str(tmp_path / "out")])
    assert stop.value.code == 2 and "--encoder" in err.getvalue() and "empty" in err.getvalue(), err.getvalue()
    assert not (tmp_path / "out").exists()
