"""`export-vlm --out DIR` wrote into whatever DIR held, file by file. Pointed at a folder that was not an export
(the fine-tuning run's folder), it mixed a model into it. Over an earlier export of another adapter, a kill or a
full disk after the weights but before `merged_from.json` left the new weights under the old adapter's record, and
`describe`/`predict` then credited that adapter with the text. Now an export is built beside DIR and moved into
place whole; a folder that is not an export is refused, an earlier export is replaced only with --overwrite, and
two exports into one DIR at once are refused."""
from __future__ import annotations

import json

import pytest

from mmlnb_dist.cli import main
from mmlnb_dist.config import load_config

from support.vlm import write_random_adapter

PIX = 56 * 56


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    overrides = [f"vlm.cache_dir={root / 'cache'}", "vlm.tiny_vision=random", f"vlm.min_pixels={PIX}",
                 f"vlm.max_pixels={PIX}"]
    vcfg = load_config("cpu-demo", overrides).vlm
    return {"root": root, "overrides": overrides, "vcfg": vcfg,
            "a": write_random_adapter(vcfg, root / "a" / "adapter", seed=0, pixels=PIX),
            "b": write_random_adapter(vcfg, root / "b" / "adapter", seed=1, pixels=PIX)}


def _export(t, adapter, out, overwrite=False):
    from mmlnb_dist.recipes.vlm.merge import merge_and_export

    v = t["vcfg"]
    return merge_and_export("tiny", adapter, out, min_pixels=v.min_pixels, max_pixels=v.max_pixels,
                            cache_dir=v.cache_dir, tiny_vision=v.tiny_vision, overwrite=overwrite)


def _cli(t, adapter, out, *extra):
    return main(["export-vlm", "--base", "tiny", "--adapter", str(adapter), "--out", str(out), *extra,
                 "--config", "cpu-demo", *t["overrides"]])


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_folder_that_is_not_an_export_is_refused(adapters, capsys):
    run_dir = adapters["a"].parent  # the fine-tuning run's folder: its adapter is in it
    before = _snapshot(run_dir)
    assert _cli(adapters, adapters["a"], run_dir, "--overwrite") == 2
    err = capsys.readouterr().err
    assert f"--out {run_dir} is not empty and is not an export-vlm output" in err, err
    assert _snapshot(run_dir) == before


def test_an_export_is_replaced_only_when_asked_and_only_whole(adapters, tmp_path, capsys, monkeypatch):
    from mmlnb_dist.recipes.vlm.model import adapter_sha256

    out = tmp_path / "merged"
    _export(adapters, adapters["a"], out)
    first = _snapshot(out)
    assert json.loads(first["merged_from.json"])["adapter_sha256"] == adapter_sha256(adapters["a"])

    assert _cli(adapters, adapters["b"], out) == 2  # without --overwrite
    err = capsys.readouterr().err
    assert f"already holds a merged model of the adapter {adapters['a']}" in err and "--overwrite" in err, err
    assert _snapshot(out) == first

    from transformers import ProcessorMixin

    def disk_full(self, *args, **kwargs):  # the weights are written, the processor and the record are not
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(ProcessorMixin, "save_pretrained", disk_full)
        with pytest.raises(OSError, match="No space left"):
            _export(adapters, adapters["b"], out, overwrite=True)
    assert _snapshot(out) == first  # the earlier export, whole, with its own record
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]  # nothing half-built left beside it

    assert _cli(adapters, adapters["b"], out, "--overwrite") == 0
    second = _snapshot(out)
    assert json.loads(second["merged_from.json"])["adapter_sha256"] == adapter_sha256(adapters["b"])
    assert second["model.safetensors"] != first["model.safetensors"]


def test_two_exports_into_one_folder_at_once_are_refused(adapters, tmp_path, capsys):
    from mmlnb_dist.core.runlock import FolderLock

    out = tmp_path / "merged"
    with FolderLock(tmp_path / ".merged.export-vlm", "export-vlm"):  # the first export, still writing
        assert _cli(adapters, adapters["a"], out) == 2
    assert "is in use by `export-vlm` (pid" in capsys.readouterr().err
    assert not out.exists()
