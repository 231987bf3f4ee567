"""`features extract --encoder NAME` with a config whose image encoder has a `weights_path`: that file holds the
config's own encoder's weights, so it does not decide for another encoder, as `pretrained` does not (it was loaded
into NAME and refused as another model's checkpoint). Given on the command line, it is NAME's and is loaded."""
from __future__ import annotations

import json

import pytest

from mmlnb_dist.cli import main

pytest.importorskip("timm")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from support.shards import make_shard_set

    return make_shard_set(tmp_path_factory.mktemp("shards"), per_class=2, max_per_shard=4, val_fraction=0.25)


def _weights_of(name, path):
    from safetensors.torch import save_file

    from mmlnb_dist.models.encoders import IMAGE_ENCODERS

    save_file({k: v.contiguous() for k, v in IMAGE_ENCODERS[name](False).body.state_dict().items()}, str(path))
    return path


def _extract(shards, out, config, *args):
    return main(["features", "extract", "--config", str(config), "--shards", str(shards), "--out", str(out),
                 "--batch-size", "4", "data.loader.num_workers=0", *args])


def test_the_configs_weights_file_is_not_loaded_into_another_encoder(shards, tmp_path):
    config = tmp_path / "tiny.yaml"
    weights = _weights_of("tiny", tmp_path / "tiny.safetensors")
    config.write_text(f"fusion:\n  model:\n    image_encoder: {{name: tiny, pretrained: false, "
                      f"weights_path: {weights}}}\n")
    assert _extract(shards, tmp_path / "f", config, "--encoder", "uni-tiny") == 0
    record = json.loads((tmp_path / "f" / "provenance.json").read_text())["record"]["identity"]["encoder"]
    assert record["name"] == "uni-tiny" and not record.get("weights_path"), record

    uni = _weights_of("uni-tiny", tmp_path / "uni.safetensors")  # given on the command line: NAME's own file
    assert _extract(shards, tmp_path / "g", config, "--encoder", "uni-tiny",
                    f"fusion.model.image_encoder.weights_path={uni}") == 0
