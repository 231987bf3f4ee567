"""The rtx4090 profile trains on ImageNet VGG16 and bert-base-uncased. On a machine where either is missing (no
network, not in the torch hub or Hugging Face cache) the pipeline stopped at its train stage, after the VLM had been
fine-tuned and had described every patch (hours on a GPU). The fusion recipe's models are now checked without
building them, before the pipeline's first stage, with the error building them gives."""
from __future__ import annotations

import json

import pytest
import torch

from mmlnb_dist.cli import main


@pytest.fixture()
def empty_caches(tmp_path, monkeypatch):
    """A machine without the weights: empty torch hub and Hugging Face caches, no network (offline mode)."""
    import huggingface_hub.constants as hub_constants
    import transformers.utils.hub as transformers_hub

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch-hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(transformers_hub, "is_offline_mode", lambda: True, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


def _patches(tmp_path):
    from support.shards import write_patch_folder

    patches = write_patch_folder(tmp_path / "patches", per_class=4)
    (patches / "descriptions.jsonl").write_text("".join(
        json.dumps({"file": p.relative_to(patches).as_posix(), "description": f"a {p.parent.name} patch"}) + "\n"
        for p in sorted(patches.rglob("*.png"))))
    return patches


def _names_only_real_settings(message: str, *settings: str) -> None:
    """The settings an encoder error tells the user to change are keys of the config they run (the models'
    own generic names, `model.image_encoder.pretrained`, are no key of any config: the first mmlnb-dist error
    of a fresh rtx4090 machine sent users to one)."""
    import re

    assert not re.search(r"(?<![\w.])model\.(image|text)_encoder", message), message
    for key in settings:
        assert key in message, (key, message)


@pytest.mark.parametrize("override, says, settings", [
    ("fusion.model.image_encoder={name: vgg16, pretrained: true}", "ImageNet weights not found",
     ["fusion.model.image_encoder.weights_path", "fusion.model.image_encoder.pretrained=false"]),
    ("fusion.model.text_encoder.name=bert-base-uncased", "text encoder 'bert-base-uncased' could not be loaded",
     ["fusion.model.text_encoder.name"]),
], ids=["imagenet-vgg16", "bert-base"])
def test_a_fusion_model_whose_weights_are_missing_stops_the_pipeline_before_any_stage(empty_caches, capsys,
                                                                                       override, says, settings):
    tmp_path = empty_caches
    code = main(["pipeline", "--patches", str(_patches(tmp_path)), "--config", "cpu-demo",
                 f"run.output_dir={tmp_path / 'runs'}", f"data.shards={tmp_path / 'shards'}", override])
    err = capsys.readouterr().err
    assert code == 2 and says in err.strip().splitlines()[-1], err[-2000:]
    _names_only_real_settings(err.strip().splitlines()[-1], *settings)
    assert not (tmp_path / "shards").exists()  # nothing was built, no VLM stage ran


def test_train_and_features_extract_name_the_fusion_settings_too(empty_caches, capsys):
    from support.shards import write_patch_folder

    tmp_path = empty_caches
    assert main(["shards", "build", "--input", str(write_patch_folder(tmp_path / "p", per_class=4)), "--out",
                 str(tmp_path / "s"), "--config", "cpu-demo"]) == 0
    capsys.readouterr()
    vgg = "fusion.model.image_encoder={name: vgg16, pretrained: true}"
    for argv in (["train", "--config", "cpu-demo", f"data.shards={tmp_path / 's'}", "fusion.model.mode=image_only",
                  f"run.output_dir={tmp_path / 'runs'}", vgg],
                 ["features", "extract", "--config", "cpu-demo", "--shards", str(tmp_path / "s"), "--out",
                  str(tmp_path / "f"), vgg]):
        assert main(argv) == 2, argv
        last = capsys.readouterr().err.strip().splitlines()[-1]
        _names_only_real_settings(last, "fusion.model.image_encoder.weights_path",
                                  "fusion.model.image_encoder.pretrained=false")


def test_a_branch_the_mode_does_not_build_is_not_checked(empty_caches):
    """image_only builds no text encoder: a missing BERT does not stop it (nor a missing VGG a text_only run)."""
    from mmlnb_dist.models.config import ImageEncoderConfig, TextEncoderConfig
    from mmlnb_dist.models.encoders import check_weights_reachable

    vgg = ImageEncoderConfig(name="vgg16", pretrained=True)
    bert = TextEncoderConfig(name="bert-base-uncased")
    check_weights_reachable(None, bert.model_copy(update={"name": "minilm"}))  # shipped: no error
    check_weights_reachable(ImageEncoderConfig(name="tiny", pretrained=False), None)
    from mmlnb_dist.models.encoders_base import EncoderError

    with pytest.raises(EncoderError, match="vgg16"):
        check_weights_reachable(vgg, None)
    with pytest.raises(EncoderError, match="bert-base-uncased"):
        check_weights_reachable(None, bert)


@pytest.mark.parametrize("override, says", [
    ("clip.model.towers.name=openai/clip-vit-base-patch32", "clip.model.towers.name: 'openai/clip-vit-base-patch32'"),
    ("clip.model.towers.name=hf-hub:wisdomik/QuiltNet-B-32", "'hf-hub:wisdomik/QuiltNet-B-32' could not be loaded"),
    ("clip.model.text_encoder=bert-base-uncased", "text encoder 'bert-base-uncased' could not be loaded"),
    ("clip.model.towers.name=open_clip:ViT-B-32:laion2b_s34b_b79k",
     "'open_clip:ViT-B-32:laion2b_s34b_b79k' could not be loaded offline"),
    ("clip.model.towers.name=open_clip:ViT-B-32:laion2b", "open_clip has no pretrained tag 'laion2b' for ViT-B-32 "
                                                          "(its tags: openai, laion400m_e31"),
    ("clip.model.towers.name=open_clip:ViT-B-99", "'ViT-B-99' is not an open_clip model"),
], ids=["transformers-clip", "open_clip-hub", "text-encoder-branch", "open_clip-name-weights", "open_clip-tag",
        "open_clip-model"])
def test_the_clip_recipes_models_are_checked_before_its_pipeline_starts(empty_caches, capsys, override, says):
    tmp_path = empty_caches
    code = main(["pipeline", "--synthetic", "--config", "clip-multilabel", f"run.output_dir={tmp_path / 'runs'}",
                 f"data.shards={tmp_path / 'shards'}", f"data.synth_dir={tmp_path / 'src'}", override])
    err = capsys.readouterr().err
    assert code == 2 and says in err.strip().splitlines()[-1], err[-2000:]
    _names_only_real_settings(err.strip().splitlines()[-1])
    assert not (tmp_path / "src").exists() and not (tmp_path / "shards").exists()


def test_a_clip_image_encoder_without_weights_names_the_clip_settings(empty_caches, capsys):
    """The CLIP recipe's encoder baseline (image-only ResNet-50) on a machine without ImageNet weights: the error
    named `model.image_encoder.weights_path`, a key of no config, and the clip config had no weights file setting
    at all; it names `clip.model.image_encoder_weights_path` now."""
    tmp_path = empty_caches
    code = main(["pipeline", "--synthetic", "--config", "clip-multilabel", f"run.output_dir={tmp_path / 'runs'}",
                 f"data.shards={tmp_path / 'shards'}", f"data.synth_dir={tmp_path / 'src'}",
                 "clip.model.fusion=image_only", "clip.model.image_encoder=resnet50"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "ImageNet weights not found" in last, last
    _names_only_real_settings(last, "clip.model.image_encoder_weights_path",
                              "clip.model.image_encoder_pretrained=false")
    assert not (tmp_path / "src").exists()


@pytest.mark.parametrize("config, override, key", [
    ("cpu-demo", "fusion.model.image_encoder={name: tiny, weights_path: WEIGHTS}",
     "fusion.model.image_encoder.weights_path"),
    ("clip-multilabel", "clip.model.image_encoder_weights_path=WEIGHTS", "clip.model.image_encoder_weights_path"),
], ids=["fusion", "clip"])
def test_a_weights_file_that_is_not_there_stops_the_pipeline_before_any_stage(tmp_path, capsys, config, override,
                                                                             key):
    missing = tmp_path / "nowhere" / "encoder.safetensors"
    extra = ["clip.model.fusion=image_only", "clip.model.image_encoder=tiny"] if config == "clip-multilabel" else []
    code = main(["pipeline", "--synthetic", "--config", config, f"run.output_dir={tmp_path / 'runs'}",
                 f"data.shards={tmp_path / 'shards'}", f"data.synth_dir={tmp_path / 'src'}", *extra,
                 override.replace("WEIGHTS", str(missing))])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and f"{key} {missing} does not exist" in last, last
    assert not (tmp_path / "src").exists()


def test_open_clip_weights_in_the_cache_or_no_pretrained_tag_pass_the_check(empty_caches):
    """Offline, an `open_clip:` name passes when its weights are in the Hugging Face cache (open_clip reads them
    from there) or when it asks for no pretrained tag (random initialisation)."""
    from mmlnb_dist.recipes.clip.towers import check_towers_reachable

    check_towers_reachable("open_clip:ViT-B-32")
    name = "open_clip:ViT-B-32:laion2b_s34b_b79k"
    with pytest.raises(Exception, match="could not be loaded offline"):
        check_towers_reachable(name)
    repo = empty_caches / "hf-cache" / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    (repo / "snapshots" / "0123abcd" / "open_clip_model.safetensors").write_bytes(b"weights")
    check_towers_reachable(name)
