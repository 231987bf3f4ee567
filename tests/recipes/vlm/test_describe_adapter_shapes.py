"""describe with an adapter trained on another base model of other layer sizes (a 3B's adapter given to a 7B
`--vlm`, or the default `vlm.model` when the adapter's own base was meant): refused before the output is claimed,
naming the adapter, the base and a tensor whose shape differs. The names of two local bases differ only by a warning
(`check_adapter_base`: a hub id and a local copy of it are the same weights), and the first batch met peft's
`size mismatch` traceback after the output was claimed."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mmlnb_dist.core.errors import UserError
from mmlnb_dist.data.map import PROVENANCE_FILE
from mmlnb_dist.recipes.vlm import describe as D

from support.vlm import make_pairs, describe_config, write_random_adapter, DESCRIBE_PIXELS


def _wider_copy(tiny: Path, out: Path) -> Path:
    """A random Qwen2.5-VL like `tiny` (same tokenizer and processor) with twice its MLP width."""
    import torch
    from transformers import AutoConfig, Qwen2_5_VLForConditionalGeneration

    shutil.copytree(tiny, out)
    config = AutoConfig.from_pretrained(out)
    config.text_config.intermediate_size *= 2
    torch.manual_seed(0)
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(out, safe_serialization=True)
    return out


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    from mmlnb_dist.recipes.vlm import model as V

    tmp = tmp_path_factory.mktemp("adapter-shapes")
    make_pairs(tmp / "in", n=4, per_shard=4, val_fraction=0.25)
    cfg = describe_config(tmp)
    tiny = Path(V.resolve_model_path("tiny", cfg.vlm.tiny_seed, cfg.vlm.cache_dir, cfg.vlm.tiny_vision))
    small = Path(shutil.copytree(tiny, tmp / "qwen-small"))
    big = _wider_copy(tiny, tmp / "qwen-big")
    adapter = write_random_adapter(cfg.vlm, tmp / "adapter", seed=0, pixels=DESCRIBE_PIXELS)
    conf = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**conf, "base_model_name_or_path": str(small)}))
    return cfg, tmp, small, big, adapter


def test_an_adapter_of_another_base_shape_is_refused_before_the_output_is_claimed(made):
    cfg, tmp, _, big, adapter = made
    out = tmp / "out-big"
    with pytest.raises(UserError, match=r"(?s)adapter.*qwen-big.*mlp\.(gate|up|down)_proj"):
        D.run_describe(cfg, str(big), str(adapter), tmp / "in", out, progress=False)
    assert not (out / PROVENANCE_FILE).exists()


def test_the_adapter_on_a_base_of_its_shapes_describes(made):
    cfg, tmp, small, _, adapter = made
    result = D.run_describe(cfg, str(small), str(adapter), tmp / "in", tmp / "out-small", progress=False)
    assert result["num_samples"] == 4


def test_predict_vlm_and_export_vlm_refuse_an_adapter_of_another_base_shape_by_name(made):
    """`predict --vlm` (`image_describer`) and `export-vlm` (`merge_and_export`) load the adapter without describe's
    preflight: peft's raw `size mismatch` traceback named neither the adapter nor the base to give."""
    from mmlnb_dist.recipes.vlm.merge import merge_and_export

    cfg, tmp, _, big, adapter = made
    with pytest.raises(UserError, match=r"(?s)adapter.*qwen-big.*mlp\.(gate|up|down)_proj"):
        D.image_describer(str(big), str(adapter), cfg.vlm)
    with pytest.raises(UserError, match=r"(?s)adapter.*qwen-big.*mlp\.(gate|up|down)_proj"):
        merge_and_export(str(big), str(adapter), tmp / "merged", min_pixels=cfg.vlm.min_pixels,
                         max_pixels=cfg.vlm.max_pixels)
    assert not (tmp / "merged").exists()
