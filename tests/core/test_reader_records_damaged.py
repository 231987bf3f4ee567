"""A reader record that parses but is not one (a list, `null`, a pid that is not a number) is passed over like an
unreadable one: a reader's or a writer's check of the folder raised TypeError/ValueError on it instead."""
from __future__ import annotations

import json
import os
import socket

import pytest

from mmlnb_dist.core.runlock import READER_PREFIX, ReadLock, live_readers


@pytest.mark.parametrize("record", ["[]", "null", '"text"', json.dumps({"host": socket.gethostname(), "pid": "x"})])
def test_a_reader_record_of_the_wrong_shape_is_passed_over(tmp_path, record):
    (tmp_path / f"{READER_PREFIX}damaged.json").write_text(record)
    live = {"command": "evaluate", "pid": os.getpid(), "host": socket.gethostname(), "started": 0.0}
    (tmp_path / f"{READER_PREFIX}live.json").write_text(json.dumps(live))
    assert live_readers(tmp_path) == [live]
    with ReadLock(tmp_path, "predict"):
        assert len(live_readers(tmp_path)) == 2
