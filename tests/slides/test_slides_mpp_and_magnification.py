"""`slides tile --mpp X --magnification Y`: two tile resolutions are a usage error naming both flags; `--mpp` used
to be dropped silently (the magnification won), so the tiles were not at the resolution the user asked for."""
from __future__ import annotations

import pytest

from support.slides import tile as _tile, two_slides

@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    return two_slides(tmp_path_factory.mktemp("wsi"))


def test_mpp_and_magnification_together_are_a_usage_error(slides, tmp_path, capsys):
    assert _tile(slides, tmp_path / "both", "--mpp", "0.25", "--magnification", "20") == 2
    err = capsys.readouterr().err
    assert "--mpp" in err and "--magnification" in err, err
    assert not (tmp_path / "both.work").exists()
