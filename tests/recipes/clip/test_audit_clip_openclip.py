"""Audit of the open_clip towers and the reachability check (recipes/clip/openclip_towers.py, towers.py): which Hub
file each tower name is checked by, open_clip's registry entries read as open_clip reads them, a pretrained model's
image size guard, the saved config of a model with a Hugging Face text tower, and the image-size guard both ways."""
from __future__ import annotations

import json

import pytest
import torch


@pytest.fixture()
def hub_files(monkeypatch):
    """The (repo, file) pairs the towers' check asks the Hub for; none is there."""
    from mmlnb_dist.recipes.clip import towers

    asked = []

    def require(repo, filename, error):
        asked.append((repo, filename))
        raise error(FileNotFoundError(filename))

    monkeypatch.setattr(towers, "require_hub_file", require)
    return asked


@pytest.mark.parametrize("name, wanted", [
    ("hf-hub:wisdomik/QuiltNet-B-32", ("wisdomik/QuiltNet-B-32", "open_clip_config.json")),
    ("vinid/plip", ("vinid/plip", "config.json")),
])
def test_a_hub_clip_is_checked_by_its_own_config_file(hub_files, name, wanted):
    from mmlnb_dist.core.errors import UserError
    from mmlnb_dist.recipes.clip.towers import check_towers_reachable

    with pytest.raises(UserError, match=f"clip.model.towers.name: '{name}' could not be loaded offline"):
        check_towers_reachable(name)
    assert hub_files == [wanted]


def test_the_tiny_towers_of_both_kinds_are_not_looked_up(hub_files):
    from mmlnb_dist.recipes.clip.towers import check_towers_reachable

    check_towers_reachable("tiny")
    check_towers_reachable("tiny-open_clip")
    assert hub_files == []


def _weights_lookups(monkeypatch, hub: str = None, found=()):
    """Record the open_clip weights files looked for in the Hugging Face cache and on the Hub."""
    import huggingface_hub
    import open_clip

    looked = {"cache": [], "hub": []}
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache",
                        lambda repo, name: looked["cache"].append((repo, name)) or None)
    monkeypatch.setattr(huggingface_hub, "file_exists",
                        lambda repo, name: looked["hub"].append((repo, name)) or (repo, name) in found)
    if hub is not None:
        monkeypatch.setattr(open_clip, "get_pretrained_cfg", lambda model, tag: {"hf_hub": hub})
    return looked


def test_an_open_clip_tag_is_looked_up_as_open_clip_reads_its_registry_entry(monkeypatch):
    """`org/repo/` is the repository's default weights (the safetensors file first); `org/repo/file` that file."""
    from mmlnb_dist.core.errors import UserError
    from mmlnb_dist.recipes.clip.towers import check_towers_reachable

    repo = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    looked = _weights_lookups(monkeypatch, found=[(repo, "open_clip_pytorch_model.bin")])
    check_towers_reachable("open_clip:ViT-B-32:laion2b_s34b_b79k")  # the Hub has it: no error
    assert looked["cache"] == [(repo, "open_clip_model.safetensors"), (repo, "open_clip_pytorch_model.bin")]

    looked = _weights_lookups(monkeypatch, hub="org/repo/weights.safetensors")
    with pytest.raises(UserError, match=r"its weights, org/repo/weights\.safetensors, are not in the Hugging Face"):
        check_towers_reachable("open_clip:ViT-B-32:openai")
    assert looked["cache"] == [("org/repo", "weights.safetensors")] == looked["hub"]


class _Tokenizer:
    context_length = 77


def _tiny_open_clip(image_size: int = 32):
    from open_clip import CLIP, CLIPTextCfg, CLIPVisionCfg

    from mmlnb_dist.recipes.clip.config import TinyClipConfig
    from mmlnb_dist.recipes.clip.openclip_towers import tiny_open_clip_config

    torch.manual_seed(0)
    model_cfg = tiny_open_clip_config(TinyClipConfig(layers=1), image_size, 77)
    return CLIP(model_cfg["embed_dim"], CLIPVisionCfg(**model_cfg["vision_cfg"]),
                CLIPTextCfg(**model_cfg["text_cfg"])), model_cfg


def test_a_pretrained_open_clip_name_builds_open_clip_towers_of_the_models_own_image_size(monkeypatch):
    """`open_clip:MODEL:TAG` is built by open_clip (weights stood in for here), its last blocks unfrozen; open_clip's
    ViT does not interpolate its positions, so another configured image size is a ConfigError."""
    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.recipes.clip import openclip_towers
    from mmlnb_dist.recipes.clip.config import ClipTowersConfig
    from mmlnb_dist.recipes.clip.towers import build_towers

    monkeypatch.setattr(openclip_towers, "_load_pretrained", lambda name: _tiny_open_clip(32))
    cfg = ClipTowersConfig(name="open_clip:ViT-B-32:openai", unfreeze_blocks=1)
    with pytest.raises(ConfigError, match=r"data.loader.image_size: 64 px, but the open_clip model "
                                          r"'open_clip:ViT-B-32:openai' takes 32 px; set data.loader.image_size=32"):
        build_towers(cfg, image_size=64)
    towers = build_towers(cfg, image_size=32)
    assert towers.kind == "open_clip" and towers.image_size == 32 and towers.max_length == 77
    assert towers.tokenize(["fat"])["input_ids"].shape == (1, 77)  # ViT-B-32's tokenizer, its context length
    assert {id(p) for p in towers.parameters() if p.requires_grad} == {
        id(p) for blocks in (towers.image_blocks, towers.text_blocks) for p in blocks[-1].parameters()}


def test_open_clip_towers_refuse_smaller_images_too():
    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.recipes.clip.openclip_towers import OpenClipTowers, _default_preprocess

    clip, model_cfg = _tiny_open_clip(32)
    towers = OpenClipTowers("tiny-open_clip", clip, _Tokenizer(), model_cfg, _default_preprocess(32))
    with pytest.raises(ConfigError, match="16 px images, but the open_clip model 'tiny-open_clip' takes 32 px"):
        towers.encode_image(torch.randn(1, 3, 16, 16))
    assert towers.encode_image(torch.randn(1, 3, 32, 32)).shape == (1, model_cfg["embed_dim"])


def test_a_saved_hugging_face_text_tower_is_rebuilt_without_its_hub_weights(tmp_path):
    """A model whose text tower is a Hugging Face model: the saved config asks for no pretrained text weights
    (they come from the export's safetensors), its tokenizer files are saved, the live config is left as is."""
    from mmlnb_dist.recipes.clip.openclip_towers import OpenClipTowers, _default_preprocess

    class _HfTokenizer(_Tokenizer):
        class tokenizer:  # noqa: N801 - open_clip's HFTokenizer keeps the transformers tokenizer here
            @staticmethod
            def save_pretrained(folder):
                (tmp_path / "out" / "tokenizer.json").write_text("{}")

    clip, model_cfg = _tiny_open_clip(32)
    clip.context_length = 77  # an HF text tower's CLIP keeps no context length of its own; its tokenizer does
    model_cfg["text_cfg"].update(hf_model_name="bert-base-uncased", hf_model_pretrained=True)
    towers = OpenClipTowers("hf-hub:org/model", clip, _HfTokenizer(), model_cfg, _default_preprocess(32))
    towers.save(tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "open_clip_config.json").read_text())
    assert saved["model_cfg"]["text_cfg"]["hf_model_pretrained"] is False
    assert saved["preprocess_cfg"]["mean"] == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    assert (tmp_path / "out" / "tokenizer.json").is_file()
    assert towers.model_cfg["text_cfg"]["hf_model_pretrained"] is True


@pytest.mark.parametrize("weights, cached", [("pytorch_model.bin", "pytorch_model.safetensors"),
                                             ("model.pth", "model.safetensors"),
                                             ("open_clip_pytorch_model.bin", "open_clip_model.safetensors")])
def test_the_safetensors_file_open_clip_prefers_counts_as_cached_for_any_bin_or_pth_entry(monkeypatch, weights,
                                                                                          cached):
    """open_clip loads `X.safetensors` in place of a registry entry's `X.bin` / `X.pth` when there is one (ViTamin's
    entries name `pytorch_model.bin`): a cached safetensors file passes the offline check, as open_clip would load it.
    The check looked for the safetensors form of open_clip's default file name only, and refused the others."""
    import huggingface_hub

    from mmlnb_dist.recipes.clip.towers import check_towers_reachable

    _weights_lookups(monkeypatch, hub=f"org/repo/{weights}")
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache",
                        lambda repo, name: "/cache/file" if (repo, name) == ("org/repo", cached) else None)
    check_towers_reachable("open_clip:ViT-B-32:openai")


def test_the_tiny_open_clip_has_the_configured_sizes_in_both_towers():
    """tiny-open_clip follows clip.model.towers.tiny: width, depth and attention heads of each tower (open_clip's
    vision config takes a head width, hidden // heads), the context length of max_length."""
    from mmlnb_dist.recipes.clip.config import ClipTowersConfig
    from mmlnb_dist.recipes.clip.towers import build_towers

    cfg = ClipTowersConfig.model_validate({"name": "tiny-open_clip", "unfreeze_blocks": 0, "max_length": 16,
                                           "tiny": {"layers": 2, "heads": 4, "hidden": 32, "projection_dim": 8}})
    towers = build_towers(cfg, image_size=32)
    for blocks in (towers.image_blocks, towers.text_blocks):
        assert len(blocks) == 2 and {b.attn.num_heads for b in blocks} == {4}
        assert {b.attn.embed_dim for b in blocks} == {32}
    assert towers.embed_dim == 8 and towers.max_length == 16
    assert towers.encode_text(**towers.tokenize(["fat"])).shape == (1, 8)
