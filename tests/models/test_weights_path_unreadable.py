"""`model.image_encoder.weights_path` that is not what it should be: a text file, a cut-short safetensors file, a
folder where a file is due, an empty folder for a transformers model: an EncoderError naming the path and what
was expected, for every loader kind (timm, transformers, transformers-clip, open_clip, the built-in encoders),
instead of a KeyError / SafetensorError / transformers traceback."""
from __future__ import annotations

import pytest

NAMES = ["tiny", "uni-tiny", "phikon-v2-tiny", "plip-tiny", "quiltnet-b-32-tiny"]


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    root = tmp_path_factory.mktemp("w")
    (root / "notes.txt").write_text("hello\n")
    (root / "cut.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\"")
    (root / "empty").mkdir()
    return root


def build(name, path):
    from mmlnb_dist.models.config import ImageEncoderConfig
    from mmlnb_dist.models.encoders import build_image_encoder

    return build_image_encoder(ImageEncoderConfig(name=name, pretrained=False, weights_path=str(path)))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("file", ["notes.txt", "cut.safetensors"])
def test_a_file_that_holds_no_weights_is_named(bad, name, file):
    from mmlnb_dist.models.encoders import EncoderError

    with pytest.raises(EncoderError, match="cannot be read as a weights file") as err:
        build(name, bad / file)
    assert str(bad / file) in str(err.value)


@pytest.mark.parametrize("name", NAMES)
def test_an_empty_folder_is_named(bad, name):
    from mmlnb_dist.models.encoders import EncoderError

    with pytest.raises(EncoderError) as err:
        build(name, bad / "empty")
    assert str(bad / "empty") in str(err.value)


@pytest.mark.parametrize("source, name", [("uni-tiny", "uni2-h-tiny"), ("tiny", "resnet50")])
def test_another_model_s_checkpoint_with_the_same_key_names_is_refused_by_name(tmp_path, source, name):
    # Both are timm ViTs (both Sequential convnets): the keys match, the shapes do not; load_state_dict's
    # "size mismatch" RuntimeError came through as a traceback.
    from safetensors.torch import save_file

    from mmlnb_dist.models.config import ImageEncoderConfig
    from mmlnb_dist.models.encoders import EncoderError, build_image_encoder

    other = build_image_encoder(ImageEncoderConfig(name=source, pretrained=False))
    path = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in other.body.state_dict().items()}, str(path))
    with pytest.raises(EncoderError, match=f"{path} does not fit '{name}'") as err:
        build(name, path)
    assert "size mismatch" in str(err.value)
