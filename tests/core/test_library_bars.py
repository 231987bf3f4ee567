"""Progress bars that libraries draw while this package loads a model (transformers 5's "Loading weights") follow
the package's bar policy: written to a file they show only when loading lasts `MMLNB_PROGRESS_INTERVAL`, and on a
terminal they clear themselves when done. The demo's console had a "Loading weights ... 57/57" line inside the
describe bar (`[A` cursor codes in a log), a bar no user can act on."""
from __future__ import annotations

import io
import sys

from mmlnb_dist.core.progress import PROGRESS_INTERVAL_ENV
from mmlnb_dist.models.config import TextEncoderConfig
from mmlnb_dist.models.encoders import build_text_encoder


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_loading_a_model_writes_no_bar_into_a_log_file(capfd, monkeypatch):
    monkeypatch.delenv(PROGRESS_INTERVAL_ENV, raising=False)
    encoder = build_text_encoder(TextEncoderConfig(name="minilm"))  # real weights: transformers' loading bar
    assert encoder.out_dim == 384
    err = capfd.readouterr().err
    assert "Loading weights" not in err, err


def test_on_a_terminal_the_loading_bar_clears_itself(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    build_text_encoder(TextEncoderConfig(name="minilm"))
    text = terminal.getvalue()
    assert "Loading weights" in text  # shown while it loads ...
    assert not text.split("\r")[-1].strip(), text[-300:]  # ... and blanked at the end (leave=False)
