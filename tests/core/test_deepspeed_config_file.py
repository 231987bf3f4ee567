"""`distributed.deepspeed_config` that is no DeepSpeed JSON file: a folder was reported "file not found" (it exists),
a missing relative path did not say which folder it was looked for in, a file that is not UTF-8 ended in a
UnicodeDecodeError traceback, and valid JSON that is no object (`[...]`, `5`) passed `config validate` and failed
with a TypeError traceback when the DeepSpeed config was built. Each is one line naming the key, the path and what
to do (exit code 2)."""
from __future__ import annotations

import contextlib
import io

import pytest

from mmlnb_dist.cli import main
from mmlnb_dist.core.engine import read_user_deepspeed_json
from mmlnb_dist.core.errors import ConfigError


def _validate(value: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stderr(out), contextlib.redirect_stdout(io.StringIO()):
        code = main(["config", "validate", "--config", "cpu-demo", f"distributed.deepspeed_config={value}"])
    assert code == 2 and "Traceback" not in out.getvalue(), out.getvalue()
    return out.getvalue()


def test_a_folder_is_named_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ds").mkdir()
    said = _validate("ds")
    assert "distributed.deepspeed_config" in said and "is a folder" in said and "not found" not in said, said


def test_a_missing_relative_path_names_the_folder_it_was_looked_for_in(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    said = _validate("launch/deepspeed/none.json")
    assert "launch/deepspeed/none.json" in said and str(tmp_path) in said, said


@pytest.mark.parametrize("content, says", [(b"\xff\xfe{}", "not UTF-8"), (b"[1, 2]", "not a JSON object"),
                                           (b"5", "not a JSON object")])
def test_a_file_that_is_no_json_object_is_refused(tmp_path, content, says):
    path = tmp_path / "ds.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=says) as err:
        read_user_deepspeed_json(path)
    assert str(err.value).startswith("distributed.deepspeed_config: ") and str(path) in str(err.value)
    assert says in _validate(str(path))
