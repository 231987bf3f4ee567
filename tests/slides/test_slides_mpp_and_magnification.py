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


@pytest.mark.parametrize("where", ["config", "override"])
def test_the_mpp_flag_wins_over_a_magnification_in_the_config(tmp_path, where):
    """`--mpp 1.0` with `slides.magnification: 20` in the --config YAML (or as a key=value) tiled at the
    magnification's resolution, the flag dropped silently (docs/slides.md: flags win over both); the flag now
    clears the magnification, as `--magnification` clears `slides.mpp`."""
    from mmlnb_dist.cli import parse_arguments
    from mmlnb_dist.commands import load_from_args
    from mmlnb_dist.commands.slides import _overrides

    config = tmp_path / "mag.yaml"
    config.write_text("slides:\n  magnification: 20\n")
    extra = ["--config", str(config)] if where == "config" else ["slides.magnification=20"]
    args = parse_arguments(["slides", "tile", "--slides", "s", "--labels", "l.csv", "--out", "o", "--mpp", "1.0",
                            *extra])
    args.overrides = list(args.overrides) + _overrides(args)
    s = load_from_args(args).slides
    assert s.mpp == 1.0 and s.magnification is None, (s.mpp, s.magnification)
