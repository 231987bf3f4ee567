"""Mutation audit of the VLM's setup guards: the LoRA name check's accepted modules and its lists of names
(lora_names.py), the loadable-model check on `~` and Windows paths and its message (source.py), describe's
preflight on its own and the claim it drops after a failure (preflight.py), what a describe is held to by the
fine-tuning run (trained_with.py), and the length count of descriptions with surrounding whitespace
(pair_lengths.py)."""
from __future__ import annotations

import io
import json
import logging

import pytest
import torch

from mmlnb_dist.core.errors import ConfigError, UserError

PIX = 56 * 56


# -- lora_names -----------------------------------------------------------------------------------------------

def test_modules_to_save_may_be_any_module_and_the_messages_list_the_names_that_exist(tiny):
    """An embedding or a norm is a module to save (not only linear layers); a target list's error names every
    linear leaf of the language model, and a modules_to_save error the modules outside the repeated layers and
    the vision tower."""
    from mmlnb_dist.recipes.vlm.config import LoraConfig
    from mmlnb_dist.recipes.vlm.lora_names import check_lora_names

    model, _ = tiny
    check_lora_names(model, LoraConfig(modules_to_save=["embed_tokens", "lm_head", "language_model.norm"]))
    language = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                       if isinstance(m, torch.nn.Linear) and "visual." not in n})
    assert language == ["down_proj", "gate_proj", "k_proj", "lm_head", "o_proj", "q_proj", "up_proj", "v_proj"]
    with pytest.raises(ConfigError) as err:
        check_lora_names(model, LoraConfig(target_modules=["q_proj", "qproj"]))
    assert str(err.value).endswith(f"available: {', '.join(language)}")  # no vision tower hint for a typo
    with pytest.raises(ConfigError) as err:
        check_lora_names(model, LoraConfig(modules_to_save=["lm_haed"]))
    listed = str(err.value).split("modules outside the repeated layers: ")[1].split(", ")
    assert {"embed_tokens", "lm_head", "norm"} <= set(listed)
    assert not {"q_proj", "self_attn", "mlp", "qkv", "merger", "blocks"} & set(listed), listed
    assert not any(name.isdigit() for name in listed), listed


# -- source -----------------------------------------------------------------------------------------------------

def test_home_and_windows_paths_are_folders_and_a_found_home_folder_is_looked_up_expanded(tmp_path, monkeypatch):
    from mmlnb_dist.recipes.vlm import source

    monkeypatch.setenv("HOME", str(tmp_path))
    asked = []
    monkeypatch.setattr(source, "require_hub_file", lambda name, file, err: asked.append(name))
    for missing in ("~/models/qwen", "~/qwen", "C:\\models\\qwen"):
        with pytest.raises(UserError, match="no such folder"):
            source.check_vlm_loadable(missing, "vlm.model")
    assert asked == []
    (tmp_path / "models" / "qwen").mkdir(parents=True)
    source.check_vlm_loadable("~/models/qwen")
    assert asked == [str(tmp_path / "models" / "qwen")]


def test_a_model_that_cannot_be_loaded_is_named_with_the_first_line_of_the_cause():
    from mmlnb_dist.recipes.vlm.source import not_loadable

    err = not_loadable("org/model", OSError("  We couldn't connect to the hub\n" + "traceback line\n" * 3),
                       "vlm.model")
    message = str(err)
    assert message.startswith("vlm.model 'org/model' could not be loaded (OSError: We couldn't connect to the hub); ")
    assert "traceback line" not in message and "org/model" in message.split("); ")[1]
    assert len(str(not_loadable("org/model", OSError("x" * 1000)))) < 700


# -- preflight --------------------------------------------------------------------------------------------------

def test_a_prompt_the_processor_refuses_is_a_config_error_naming_the_key(tiny):
    from mmlnb_dist.recipes.vlm.preflight import largest_prompt_tokens

    _, processor = tiny
    for prompt in ("Describe <|image_pad|> it.", "Describe <|video_pad|> it."):
        with pytest.raises(ConfigError, match=r"vlm.prompt .* cannot be encoded with an image"):
            largest_prompt_tokens(processor, prompt, PIX)


def test_describe_s_preflight_refuses_another_tiny_base_and_non_finite_weights(cache, tmp_path):
    """Alone, before the model loads: what load_adapter would meet in the first batch."""
    from safetensors.torch import load_file, save_file

    from mmlnb_dist.recipes.vlm.config import VLMConfig
    from mmlnb_dist.recipes.vlm.preflight import check_describe_ready

    from support.vlm import write_random_adapter

    vcfg = VLMConfig(model="tiny", min_pixels=PIX, max_pixels=PIX, cache_dir=cache, tiny_vision="random")
    adapter = write_random_adapter(vcfg, tmp_path / "adapter", seed=1, pixels=PIX)
    check_describe_ready(vcfg, "tiny", str(adapter))
    with pytest.raises(UserError, match=r"trained on the base model tiny-qwen2.5-vl-seed0-.*seed1"):
        check_describe_ready(vcfg.model_copy(update={"tiny_seed": 1}), "tiny", str(adapter))
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    name = sorted(weights)[0]
    weights[name][0, 0] = float("inf")
    save_file(weights, str(adapter / "adapter_model.safetensors"))
    with pytest.raises(UserError, match="non-finite"):
        check_describe_ready(vcfg, "tiny", str(adapter))


def test_the_claim_goes_only_when_nothing_was_written_behind_it(tmp_path):
    """A finished shard or a journaled batch keeps the provenance (a resume continues them); an empty journal, or
    nothing, drops it; a missing folder is no error."""
    from mmlnb_dist.data.map import PROGRESS_DIR, PROVENANCE_FILE
    from mmlnb_dist.recipes.vlm.preflight import drop_claim_without_output

    def claimed(name, tar=False, journal=None):
        out = tmp_path / name
        (out / PROGRESS_DIR).mkdir(parents=True)
        (out / PROVENANCE_FILE).write_text("{}")
        if tar:
            (out / "train-000000.tar").write_bytes(b"tar")
        if journal is not None:
            (out / PROGRESS_DIR / "train-000000.jsonl").write_text(journal)
        drop_claim_without_output(out)
        return (out / PROVENANCE_FILE).exists()

    assert claimed("shard", tar=True) and claimed("journal", journal='{"batch": 0}\n')
    assert not claimed("nothing") and not claimed("empty-journal", journal="")
    drop_claim_without_output(tmp_path / "never-made")


# -- trained_with -----------------------------------------------------------------------------------------------

def test_tiny_is_not_a_local_folder_called_tiny_and_a_merged_model_is_named_in_the_refusal(tmp_path):
    from mmlnb_dist.recipes.vlm.config import VLMConfig
    from mmlnb_dist.recipes.vlm.trained_with import check_describe_settings, settings_differences

    given = VLMConfig(model="tiny", prompt="P", min_pixels=PIX, max_pixels=PIX)
    assert settings_differences(given, "tiny", "adapter", {"model": "/models/tiny"}) == [
        "vlm.model: given 'tiny', trained with '/models/tiny'"]
    assert settings_differences(given, "/models/tiny", "adapter", {"model": "tiny"}) == [
        "vlm.model: given '/models/tiny', trained with 'tiny'"]
    # trained on another base: that base is the difference, not the tiny model's seed
    assert settings_differences(given.model_copy(update={"tiny_seed": 3}), "tiny", "adapter",
                                {"model": "Qwen/Qwen2.5-VL-7B-Instruct", "tiny_seed": 0}) == [
        "vlm.model: given 'tiny', trained with 'Qwen/Qwen2.5-VL-7B-Instruct'"]
    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "config.yaml").write_text("vlm:\n  prompt: Q\n")
    merged = tmp_path / "merged"
    merged.mkdir()
    (merged / "merged_from.json").write_text(json.dumps({"adapter": str(run / "adapter")}))
    with pytest.raises(ConfigError) as err:
        check_describe_settings(given, str(merged), None)
    assert str(err.value).startswith(f"--vlm {merged} (merged from {run / 'adapter'}) was fine-tuned with other")
    assert "vlm.prompt: given 'P', trained with 'Q'" in str(err.value)


def test_a_run_config_without_a_vlm_mapping_fixes_nothing(tmp_path):
    from mmlnb_dist.recipes.vlm.trained_with import trained_vlm_section

    for text in ("", "vlm: [a, b]\n", "- 1\n- 2\n", "vlm: null\n"):
        path = tmp_path / "config.yaml"
        path.write_text(text)
        assert trained_vlm_section(path) == {}, text
    path.write_text("vlm:\n  prompt: P\n")
    assert trained_vlm_section(path) == {"prompt": "P"}


# -- pair_lengths -----------------------------------------------------------------------------------------------

def test_whitespace_around_a_description_is_not_counted_as_length_and_a_long_list_of_keys_is_shortened(tiny, caplog):
    """encode_pair trains on the stripped text: a description that fits once stripped is not counted as cut. The
    warning names the first five keys and says there are more."""
    from PIL import Image

    from mmlnb_dist.recipes.vlm import model as V
    from mmlnb_dist.recipes.vlm.batches import Pair
    from mmlnb_dist.recipes.vlm.config import VLMConfig
    from mmlnb_dist.recipes.vlm.pair_lengths import SHOWN_KEYS, cut_keys, pair_counts

    _, processor = tiny
    buf = io.BytesIO()
    Image.new("RGB", (56, 56), (90, 40, 160)).save(buf, format="PNG")
    text = "Sheets of small round blue cells."
    n_prompt = len(V.encode_prompt(processor, V.as_rgb(buf.getvalue()), "Describe.").input_ids)
    fits = n_prompt + len(processor.tokenizer(text + V.END_OF_TURN, add_special_tokens=False)["input_ids"])
    padded = Pair("padded", buf.getvalue(), f"  {text}  \n\n", "UD")
    assert len(V.encode_pair(processor, padded.image, "Describe.", padded.text, fits).labels) == fits
    assert cut_keys(processor, [padded], "Describe.", fits) == []

    def warned(n):
        pairs = [Pair(f"k{i}", buf.getvalue(), text, "UD") for i in range(n)]
        cfg = VLMConfig(prompt="Describe.", max_length=fits - 1, min_pixels=PIX, max_pixels=PIX)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mmlnb_dist"):
            counts = pair_counts(processor, cfg, {"train": pairs})
        assert counts == {"data/train_pairs": float(n), "data/train_pairs_cut": float(n)}
        (line,) = [r.getMessage() for r in caplog.records if "longer than vlm.max_length" in r.getMessage()]
        return line

    assert "k0, k1, k2, k3, k4. Raise" in warned(SHOWN_KEYS)
    assert "k0, k1, k2, k3, k4, .... Raise" in warned(SHOWN_KEYS + 1) and "k5" not in warned(SHOWN_KEYS + 1)


def test_an_image_whose_prompt_alone_passes_max_length_is_refused_at_setup_naming_the_settings(tiny):
    """The preflight measures a square image at vlm.max_pixels, but the processor scales a narrow image up past
    vlm.min_pixels (rounding each side up), so it can take more tokens: such a pair passed the preflight and failed
    mid-training in `encode_pair` with advice to lower vlm.max_pixels. The per-size count at setup refuses it,
    naming the sample, its size, the tokens and the settings that decide them."""
    from PIL import Image

    from mmlnb_dist.recipes.vlm import model as V
    from mmlnb_dist.recipes.vlm.batches import Pair
    from mmlnb_dist.recipes.vlm.config import VLMConfig
    from mmlnb_dist.recipes.vlm.pair_lengths import pair_counts
    from mmlnb_dist.recipes.vlm.preflight import check_prompt_fits, largest_prompt_tokens

    _, processor = tiny
    square = largest_prompt_tokens(processor, "Describe.", PIX)
    buf = io.BytesIO()
    Image.new("RGB", (300, 10), (90, 40, 160)).save(buf, format="PNG")
    narrow = len(V.encode_prompt(processor, V.as_rgb(buf.getvalue()), "Describe.").input_ids)
    assert narrow > square  # (the processor's rounding: what the test is about)
    cfg = VLMConfig(prompt="Describe.", max_length=narrow, min_pixels=PIX, max_pixels=PIX)
    check_prompt_fits(processor, cfg)  # the square fits: the preflight passes
    with pytest.raises(ConfigError) as err:
        pair_counts(processor, cfg, {"train": [Pair("narrow-0", buf.getvalue(), "Small round cells.", "UD")]})
    message = str(err.value)
    assert f"vlm.max_length={narrow}" in message and "narrow-0" in message and "300x10" in message
    assert f"{narrow} tokens" in message and "vlm.min_pixels" in message
