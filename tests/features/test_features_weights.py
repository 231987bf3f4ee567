"""`features extract` says which weights made the features: `--encoder NAME` on the command line means NAME's
pretrained weights (as TRIDENT's `--patch_encoder` does), random initialisation only when asked for, and the
record says which, so random and pretrained features are never confused. An image size a fixed-size encoder
cannot take is refused before anything is written."""
from __future__ import annotations

import json

import pytest

from mmlnb_dist.cli import main

SIZE = 24


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from support.shards import make_shard_set

    return make_shard_set(tmp_path_factory.mktemp("shards"), per_class=3, max_per_shard=4, val_fraction=0.25)


def encoder_record(out):
    return json.loads((out / "provenance.json").read_text())["record"]["identity"]["encoder"]


def cli_extract(shards, out, *args):
    return main(["features", "extract", "--shards", str(shards), "--out", str(out), "--batch-size", "4",
                 "--image-size", "32", "data.loader.num_workers=0", *args])


def test_an_encoder_named_on_the_command_line_gets_its_pretrained_weights(shards, tmp_path):
    # The default profile (cpu-demo) sets pretrained: false for its `tiny` encoder; `--encoder efficientnet_lite0`
    # extracted random-weight features recorded with the Apache-2.0 licence of weights never loaded.
    from mmlnb_dist.models.config import ImageEncoderConfig
    from mmlnb_dist.models.encoders import build_image_encoder

    assert cli_extract(shards, tmp_path / "f", "--encoder", "efficientnet_lite0") == 0
    record = encoder_record(tmp_path / "f")
    shipped = build_image_encoder(ImageEncoderConfig(name="efficientnet_lite0", pretrained=True))
    assert record["weights_digest"] == shipped.weights_digest
    assert record["pretrained"] is True and record["licence"] == "Apache-2.0"


def test_random_weights_asked_for_are_recorded_as_random_and_never_continued_as_pretrained(shards, tmp_path,
                                                                                            capsys):
    out = tmp_path / "f"
    assert cli_extract(shards, out, "--encoder", "efficientnet_lite0",
                       "fusion.model.image_encoder.pretrained=false") == 0
    record = encoder_record(out)
    assert record["pretrained"] is False and "random" in record["licence"]
    capsys.readouterr()
    assert cli_extract(shards, out, "--encoder", "efficientnet_lite0") == 2
    assert "identity.encoder.pretrained: False -> True" in capsys.readouterr().err


def test_the_tiny_encoders_stay_random_whatever_the_profile_says(shards, tmp_path):
    # a profile whose own encoder is pretrained: `--encoder uni-tiny` (random by design) is not asked for weights
    profile = tmp_path / "pretrained.yaml"
    profile.write_text("fusion:\n  model:\n    image_encoder:\n      name: efficientnet_lite0\n"
                       "      pretrained: true\n")
    assert cli_extract(shards, tmp_path / "f", "--encoder", "uni-tiny", "-c", str(profile)) == 0
    assert encoder_record(tmp_path / "f")["pretrained"] is False


def test_a_size_a_fixed_size_encoder_cannot_take_is_refused_before_anything_is_written(shards, tmp_path):
    # h-optimus-0 takes 224 px only: `--image-size 64` ended in timm's AssertionError after provenance.json was
    # written, and the corrected command was then refused ("identity.transform.image_size: 64 -> 224").
    from mmlnb_dist.core.errors import UserError
    from mmlnb_dist.features import extract_features
    from mmlnb_dist.models.config import ImageEncoderConfig

    out = tmp_path / "f"
    encoder = ImageEncoderConfig(name="h-optimus-0-tiny", pretrained=False)
    with pytest.raises(UserError, match=r"--image-size 64.*224") as err:
        extract_features(encoder, shards, out, image_size=64, batch_size=4, progress=False)
    assert "h-optimus-0-tiny" in str(err.value)
    assert not (out / "provenance.json").exists()
    assert extract_features(encoder, shards, out, batch_size=4, progress=False)["image_size"] == 224


def test_an_extraction_that_fails_before_its_first_file_leaves_no_claim(shards, tmp_path, monkeypatch):
    # a claim without a single feature file would refuse the corrected rerun for settings that made nothing
    from mmlnb_dist.features import extract
    from mmlnb_dist.models.config import ImageEncoderConfig

    def broken(*args, **kwargs):
        raise RuntimeError("the encoder failed on the first batch")

    out = tmp_path / "f"
    with monkeypatch.context() as patched:
        patched.setattr(extract._ShardEncoder, "encode_shard", broken)
        with pytest.raises(RuntimeError, match="first batch"):
            extract.extract_features(ImageEncoderConfig(name="tiny", pretrained=False), shards, out, image_size=16,
                                     progress=False)
    assert not (out / "provenance.json").exists()
    result = extract.extract_features(ImageEncoderConfig(name="tiny", pretrained=False), shards, out,
                                      image_size=SIZE, progress=False)
    assert result["image_size"] == SIZE


def test_a_folder_extracted_before_pretrained_was_recorded_is_refused_up_front(shards, tmp_path):
    """Such a folder passed the config checks and was refused only in setup, after the model and loaders were
    built, with a generic "encoder.pretrained: <absent> -> False"."""
    from mmlnb_dist.config import load_config
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.features import FeaturesError
    from mmlnb_dist.recipes.fusion.extracted import check_config

    out = tmp_path / "old"
    assert cli_extract(shards, out, "--encoder", "tiny") == 0
    cfg = load_config("cpu-demo", [f"data.shards={shards}", f"fusion.image_features={out}", "data.loader.augment=false",
                                   "data.loader.image_size=32",
                                   "fusion.curriculum.phases=[{start_epoch: 0, train_image_encoder: false}]"])
    check_config(cfg, ShardSet.open(shards))  # a current folder fits
    path = out / "provenance.json"
    record = json.loads(path.read_text())
    del record["record"]["identity"]["encoder"]["pretrained"]  # as the extraction of the day before wrote it
    path.write_text(json.dumps(record))
    with pytest.raises(FeaturesError, match=r"extracted before feature records said whether the encoder's weights "
                                            r"were pretrained or random.*features extract --encoder tiny"):
        check_config(cfg, ShardSet.open(shards))


def test_the_configs_own_encoder_named_again_keeps_the_configs_pretrained_setting(shards, tmp_path):
    # A run of efficientnet_lite0 with `pretrained: false` is refused on pretrained features, and its remedy says
    # `features extract --encoder efficientnet_lite0 ... with the same fusion.model.image_encoder settings`: with
    # that config, `--encoder efficientnet_lite0` still loaded the ImageNet weights, so the refusal came again.
    config = tmp_path / "random-lite0.yaml"
    config.write_text("fusion:\n  model:\n    image_encoder: {name: efficientnet_lite0, pretrained: false}\n")
    assert cli_extract(shards, tmp_path / "f", "-c", str(config), "--encoder", "efficientnet_lite0") == 0
    assert encoder_record(tmp_path / "f")["pretrained"] is False
    assert cli_extract(shards, tmp_path / "g", "-c", str(config)) == 0  # what `--encoder` left out gives
    assert encoder_record(tmp_path / "g") == encoder_record(tmp_path / "f")
