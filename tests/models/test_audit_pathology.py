"""Audit of models/pathology.py beyond tests/models/test_pathology_encoders.py: the patch size of every entry's
architecture (the model cards': a wrong one keeps the embedding size and nearly the parameter count), what a built
encoder declares (input size, normalisation), the registry's answers for `<name>-tiny`, licences' commercial use,
the weights files and folders `weights_path` accepts or refuses, and the error of a model that is not here.

Oracles: the model cards (hard-coded below) and outputs of an encoder built from the same tensors."""
from __future__ import annotations

import logging

import pytest
import torch

pytest.importorskip("timm")
pytest.importorskip("open_clip")

from mmlnb_dist.models.config import ImageEncoderConfig
from mmlnb_dist.models.encoders import EncoderError, build_image_encoder, encoder_provenance, image_normalisation
from mmlnb_dist.models.pathology import PATHOLOGY_MODELS, access_message

PATCH = {"uni": 16, "uni2-h": 14, "virchow2": 14, "h-optimus-0": 14, "prov-gigapath": 16, "phikon-v2": 16,
         "quiltnet-b-32": 32, "plip": 32}  # pixels per patch side, from the model cards (ViT-L/16, ViT-g/14, ...)


def _tiny(name: str, **kw):
    return build_image_encoder(ImageEncoderConfig(name=f"{name}-tiny", pretrained=False, **kw)).eval()


def _patch_side(encoder) -> int:
    body, loader = encoder.body, encoder.loader
    if loader == "timm":
        return body.patch_embed.patch_size[0]
    if loader == "transformers":
        return body.config.patch_size
    if loader == "transformers-clip":
        return body["vision_model"].config.patch_size
    return body.conv1.kernel_size[0]  # open_clip VisionTransformer


@pytest.mark.parametrize("name", sorted(PATCH))
def test_every_entry_cuts_224_px_images_into_its_card_s_patches_and_declares_its_input(name):
    """The tiny form keeps the architecture's patch size (only width and depth shrink); a built encoder declares
    the card's input size and normalisation itself (feature extraction reads them from the encoder)."""
    encoder = _tiny(name)
    assert _patch_side(encoder) == PATCH[name]
    norm = image_normalisation(name)
    assert encoder.input_size == 224 == norm["input_size"]
    assert list(encoder.mean) == norm["mean"] and list(encoder.std) == norm["std"]


def test_tiny_names_answer_for_their_family():
    """`<name>-tiny` has its family's normalisation, licence and gating (a gated family's tiny form is recorded
    as gated too: its provenance must not read as freely usable)."""
    assert image_normalisation("h-optimus-0-tiny") == image_normalisation("h-optimus-0")
    assert image_normalisation("h-optimus-0-tiny")["mean"] == [0.707223, 0.578729, 0.703617]
    prov = encoder_provenance(_tiny("uni"))
    assert prov["licence"] == "CC-BY-NC-ND-4.0" and prov["gated"] is True and prov["commercial_use"] is False


def test_commercial_use_follows_the_licence():
    """Non-commercial: CC-BY-NC*, Owkin's non-commercial licence, PLIP's research-use terms; MIT/Apache: allowed."""
    use = {name: entry.commercial_use for name, entry in PATHOLOGY_MODELS.items()}
    assert use == {"uni": False, "uni2-h": False, "virchow2": False, "h-optimus-0": True, "prov-gigapath": True,
                   "phikon-v2": False, "quiltnet-b-32": True, "plip": False}


def test_repo_ids_drop_the_loader_prefix_of_either_spelling():
    """`hf-hub:` (timm, open_clip) and Prov-GigaPath's `hf_hub:` both name the Hub repository after the colon."""
    assert {n: e.repo_id for n, e in PATHOLOGY_MODELS.items()} == {
        "uni": "MahmoodLab/uni", "uni2-h": "MahmoodLab/UNI2-h", "virchow2": "paige-ai/Virchow2",
        "h-optimus-0": "bioptimus/H-optimus-0", "prov-gigapath": "prov-gigapath/prov-gigapath",
        "phikon-v2": "owkin/phikon-v2", "quiltnet-b-32": "wisdomik/QuiltNet-B-32", "plip": "vinid/plip"}


def test_a_missing_open_model_says_where_to_download_it_without_asking_for_access():
    msg = access_message(PATHOLOGY_MODELS["plip"], OSError("not cached\nsecond line"))
    assert "https://huggingface.co/vinid/plip" in msg and "`huggingface-cli download vinid/plip`" in msg
    assert "request access" not in msg and "OSError: not cached" in msg and "second line" not in msg
    assert "model.image_encoder.weights_path" in msg


def test_a_tiny_model_asked_for_pretrained_weights_is_refused():
    with pytest.raises(EncoderError, match="random tiny model without pretrained weights.*pretrained=false"):
        build_image_encoder(ImageEncoderConfig(name="uni-tiny", pretrained=True))


def test_a_weights_path_that_does_not_exist_is_refused_naming_it(tmp_path):
    absent = tmp_path / "absent.safetensors"
    with pytest.raises(EncoderError, match=f"weights_path {absent} does not exist"):
        _tiny("uni", weights_path=str(absent))


def test_a_timm_folder_with_only_pytorch_model_bin_loads(tmp_path):
    """A Hub folder of an older upload (pytorch_model.bin, no safetensors) is read like model.safetensors."""
    source = _tiny("uni")
    folder = tmp_path / "uni"
    folder.mkdir()
    torch.save(source.body.state_dict(), folder / "pytorch_model.bin")
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(_tiny("uni", weights_path=str(folder))(x), source(x))


def test_a_folder_without_weights_is_refused_naming_the_files_looked_for(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(EncoderError, match=r"no weights file \(model.safetensors.*pytorch_model.bin\) in "):
        _tiny("uni", weights_path=str(tmp_path))


def test_a_transformers_model_from_a_state_dict_file_loads(tmp_path):
    """For a transformers entry a weights FILE is a state dict for the recorded architecture (only a folder goes
    through from_pretrained)."""
    from safetensors.torch import save_file

    source = _tiny("phikon-v2")
    path = tmp_path / "phikon.safetensors"
    save_file({k: v.contiguous() for k, v in source.body.state_dict().items()}, str(path))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(_tiny("phikon-v2", weights_path=str(path))(x), source(x), atol=1e-6)


def test_weights_the_encoder_does_not_use_are_reported_and_the_rest_loads(tmp_path, caplog):
    from safetensors.torch import save_file

    source = _tiny("uni")
    state = {k: v.contiguous() for k, v in source.body.state_dict().items()}
    state["head.extra.weight"] = torch.zeros(2)
    save_file(state, str(tmp_path / "uni.safetensors"))
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.models.pathology"):
        loaded = _tiny("uni", weights_path=str(tmp_path / "uni.safetensors"))
    assert "1 weights not used by 'uni-tiny'" in caplog.text and "head.extra.weight" in caplog.text
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))


def test_a_broken_local_folder_raises_its_own_error_not_the_hub_access_steps(tmp_path):
    """pretrained=true with a local model folder: a folder that cannot be loaded is reported as such, never as
    'not available on this machine ... request access' (nothing was to come from the Hub)."""
    folder = tmp_path / "phikon"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    with pytest.raises((OSError, ValueError)) as caught:  # transformers' own error about the folder's config
        build_image_encoder(ImageEncoderConfig(name="phikon-v2", pretrained=True, weights_path=str(folder)))
    assert "not available on this machine" not in str(caught.value)


def test_an_open_clip_image_tower_state_file_loads_as_well_as_a_whole_clip_checkpoint(tmp_path):
    """weights_path holds keys of `encoder.body` (what build_image_encoder documents, and what saving a built
    encoder's body gives); for an open_clip entry only a whole-CLIP checkpoint's `visual.` keys are cut down to
    the image tower. A tower file used to be refused: every key lacking `visual.` was dropped ("lacks 32 weights")."""
    from safetensors.torch import save_file

    source = _tiny("quiltnet-b-32")
    tower = {k: v.contiguous() for k, v in source.body.state_dict().items()}
    save_file(tower, str(tmp_path / "tower.safetensors"))
    save_file({"visual." + k: v for k, v in tower.items()} | {"text.w": torch.zeros(1)},
              str(tmp_path / "clip.safetensors"))
    x = source.normalize(torch.rand(1, 3, 224, 224))
    with torch.no_grad():
        for file in ("tower.safetensors", "clip.safetensors"):
            assert torch.equal(_tiny("quiltnet-b-32", weights_path=str(tmp_path / file))(x), source(x)), file
