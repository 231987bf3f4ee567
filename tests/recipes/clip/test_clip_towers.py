"""Both tower kinds (a transformers CLIPModel and an open_clip CLIP) through the recipe: a short run trains, and the
export rebuilds offline, from JSON + safetensors alone, a model whose logits equal the best checkpoint's."""
from __future__ import annotations

from pathlib import Path

import pytest

from support.clip import VOCAB, caption_shards, clip_config, export_matches_checkpoint


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return caption_shards(tmp_path_factory.mktemp("clip-towers"), n=48, size=32)


@pytest.mark.slow
@pytest.mark.parametrize("towers", ["tiny", "tiny-open_clip"])
def test_both_tower_kinds_train_and_their_export_reloads_offline_with_equal_logits(shards, tmp_path, towers):
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes import recipe_class

    overrides = ("train.epochs=2", f"clip.model.towers.name={towers}")
    cfg = clip_config(shards, tmp_path, *overrides)
    result = run(recipe_class("clip"), cfg)
    assert result["val/loss"] == result["val/loss"]  # finite
    meta = export_matches_checkpoint(result, cfg)
    assert meta["classes"] == VOCAB and meta["model"]["towers"]["name"] == towers
    # CLIP's normalisation (OpenAI's statistics) for both kinds; the open_clip one comes from the model itself
    assert meta["preprocessing"]["image_mean"] == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    assert meta["preprocessing"]["image_std"] == pytest.approx([0.26862954, 0.26130258, 0.27577711])
    export_files = {p.name for p in Path(result["export_dir"]).rglob("*")}
    assert not any(name.endswith((".pt", ".pth", ".bin", ".pkl")) for name in export_files), export_files
    if towers == "tiny-open_clip":
        assert "open_clip_config.json" in export_files
        assert meta["towers"] == {"kind": "open_clip", "tokenizer": "open_clip SimpleTokenizer",
                                  "context_length": cfg.clip.model.towers.max_length}


def test_pretrained_open_clip_names_unreachable_offline_are_a_user_error(monkeypatch):
    """QuiltNet is loaded by open_clip from the HF hub; offline that must be one clear UserError naming the key."""
    from mmlnb_dist.core.errors import UserError
    from mmlnb_dist.recipes.clip.config import ClipTowersConfig
    from mmlnb_dist.recipes.clip.towers import build_towers

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match=r"clip\.model\.towers\.name: 'hf-hub:wisdomik/QuiltNet-B-32'"):
        build_towers(ClipTowersConfig(name="hf-hub:wisdomik/QuiltNet-B-32"), image_size=224)
    with pytest.raises(UserError, match=r"clip\.model\.towers\.name"):
        build_towers(ClipTowersConfig(name="open_clip:no-such-model"), image_size=224)

