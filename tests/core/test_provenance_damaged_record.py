"""A provenance record cut short or replaced (a disk that filled, a hand edit) met by `check_or_record` was a
JSONDecodeError / KeyError traceback from `describe` and `features extract`; it is now a `ProvenanceError` naming
the file and the ways on, and the damaged file is left as it was."""
from __future__ import annotations

import pytest

from mmlnb_dist.core.errors import UserError
from mmlnb_dist.core.provenance import ProvenanceError, check_or_record


@pytest.mark.parametrize("text", ['{"record": {"model": "a"', '["not", "a", "record"]', '{"changes": []}', ""])
def test_a_damaged_record_is_refused_by_name(tmp_path, text):
    path = tmp_path / "provenance.json"
    path.write_text(text)
    with pytest.raises(ProvenanceError) as caught:
        check_or_record(path, {"model": "a"}, what=f"{tmp_path} (descriptions)")
    message = str(caught.value)
    assert str(path) in message and "damaged" in message and "new output" in message
    assert isinstance(caught.value, UserError) and path.read_text() == text


def test_a_sound_record_is_still_checked(tmp_path):
    path = tmp_path / "provenance.json"
    assert check_or_record(path, {"model": "a"}, what="out") == []
    assert check_or_record(path, {"model": "a"}, what="out") == []
    with pytest.raises(ProvenanceError, match="model"):
        check_or_record(path, {"model": "b"}, what="out")
