"""Mutation audit of the VLM LoRA stage: what peft is given (rank, alpha, dropout, the exact modules), the LoRA name
check, a merged export equal to base + (alpha / r) B A and to peft's own merge, the adapter digest's inputs, the
sampling pipeline against HF's processors, the decoding presets, the memory estimate's terms and directions, the
quality report's word statistics, the loadable-model and prompt-length guards, and the one-batch guard."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from mmlnb_dist.core.errors import ConfigError, UserError

PIX = 56 * 56


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def _tiny(cache):
    from mmlnb_dist.recipes.vlm import model as V

    return V.load_vlm("tiny", min_pixels=PIX, max_pixels=PIX, cache_dir=cache)


def _language_linear(model, leaf):
    return {n for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and "visual." not in n and n.endswith("." + leaf)}


# -- LoRA: what peft is given ------------------------------------------------------------------------------

def test_apply_lora_hands_peft_the_rank_alpha_dropout_and_exactly_the_named_modules(cache, tmp_path):
    """r, alpha and dropout reach every adapted layer (A is r x in, B out x r, scaling alpha / r, dropout p), only
    the language model's named projections are adapted, and modules_to_save are trained in full."""
    from mmlnb_dist.recipes.vlm import model as V
    from mmlnb_dist.recipes.vlm.config import LoraConfig

    model, _ = _tiny(cache)
    want = _language_linear(model, "q_proj") | _language_linear(model, "down_proj")
    lora = LoraConfig(r=3, alpha=7, dropout=0.25, target_modules=["q_proj", "down_proj"], modules_to_save=["lm_head"])
    peft = V.apply_lora(model, lora)
    cfg = peft.peft_config["default"]
    assert (cfg.r, cfg.lora_alpha, cfg.lora_dropout) == (3, 7, 0.25)
    adapted = {n.removeprefix("base_model.model."): m for n, m in peft.named_modules() if hasattr(m, "lora_A")}
    assert set(adapted) == want
    for m in adapted.values():
        assert m.lora_A["default"].weight.shape == (3, m.in_features)
        assert m.lora_B["default"].weight.shape == (m.out_features, 3)
        assert m.scaling["default"] == pytest.approx(7 / 3)
        assert m.lora_dropout["default"].p == 0.25
    trainable = [n for n, p in peft.named_parameters() if p.requires_grad]
    assert any("lm_head.modules_to_save" in n for n in trainable)
    assert all("lora_" in n or "modules_to_save" in n for n in trainable)
    # saved as finetune-vlm saves it: the base it was trained on, its r/alpha, and exactly the trained tensors
    from safetensors.torch import load_file

    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.recipes.vlm.adapter import save_adapter

    save_adapter(peft, tmp_path / "adapter", DistEnv(), base_path="/models/tiny-qwen-x")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert (config["base_model_name_or_path"], config["r"], config["lora_alpha"]) == ("/models/tiny-qwen-x", 3, 7)
    saved = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    lora_a = {n: p for n, p in peft.named_parameters() if ".lora_A." in n}
    assert len(lora_a) == len(want) == sum(".lora_A." in k for k in saved)
    for name, param in lora_a.items():
        assert torch.equal(saved[name.replace(".default.", ".")], param.detach())


def test_lora_names_refuse_a_partial_suffix_a_vision_only_name_and_an_unknown_module_to_save(cache):
    """peft would adapt whatever a suffix hits: `proj` (a piece of a name), `qkv` (the vision tower's only) and a
    misspelt modules_to_save are refused, naming the entry; real names pass."""
    from mmlnb_dist.recipes.vlm.config import LoraConfig
    from mmlnb_dist.recipes.vlm.lora_names import check_lora_names

    model, _ = _tiny(cache)
    check_lora_names(model, LoraConfig(target_modules=["q_proj", "down_proj"], modules_to_save=["lm_head"]))
    with pytest.raises(ConfigError, match="target_modules: proj match"):
        check_lora_names(model, LoraConfig(target_modules=["q_proj", "proj"]))
    with pytest.raises(ConfigError, match="qkv name\\(s\\) the vision tower"):
        check_lora_names(model, LoraConfig(target_modules=["qkv"]))
    with pytest.raises(ConfigError, match="modules_to_save: lm_haed match"):
        check_lora_names(model, LoraConfig(modules_to_save=["lm_haed"]))


# -- merge ------------------------------------------------------------------------------------------------

def test_a_merged_export_holds_base_plus_scaled_lora_as_peft_merges_it(cache, tmp_path):
    """Every adapted weight of the export is W + (alpha / r) B A of the adapter's safetensors, every other weight
    the base's, the whole equal to peft's merge_and_unload; the record names the adapter's digest."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import Qwen2_5_VLForConditionalGeneration

    from mmlnb_dist.config import load_config
    from mmlnb_dist.recipes.vlm.merge import MERGED_RECORD, fine_tune_sha256, merge_and_export
    from mmlnb_dist.recipes.vlm.model import adapter_sha256
    from support.vlm import write_random_adapter

    vcfg = load_config("cpu-demo", [f"vlm.cache_dir={cache}", "vlm.tiny_vision=random", "vlm.lora.r=2",
                                    "vlm.lora.alpha=5", "vlm.lora.target_modules=[q_proj,up_proj]"]).vlm
    adapter = write_random_adapter(vcfg, tmp_path / "run" / "adapter", seed=3, pixels=PIX)
    out = merge_and_export("tiny", adapter, tmp_path / "merged", min_pixels=PIX, max_pixels=PIX, cache_dir=cache,
                           tiny_vision="random")
    merged = dict(Qwen2_5_VLForConditionalGeneration.from_pretrained(out).named_parameters())
    base = dict(_tiny(cache)[0].named_parameters())
    lora = load_file(str(adapter / "adapter_model.safetensors"))
    updated = set()
    for key, a in lora.items():
        if ".lora_A." not in key:
            continue
        name = key.removeprefix("base_model.model.").replace(".lora_A.weight", ".weight")
        b = lora[key.replace(".lora_A.", ".lora_B.")]
        torch.testing.assert_close(merged[name], base[name] + (5 / 2) * b @ a, rtol=1e-5, atol=1e-6)
        updated.add(name)
    assert updated and any(not torch.equal(merged[n], base[n]) for n in updated)
    assert {n.rsplit(".", 2)[-2] for n in updated} == {"q_proj", "up_proj"}
    for name in set(base) - updated:
        assert torch.equal(merged[name], base[name]), name
    reference = PeftModel.from_pretrained(_tiny(cache)[0], str(adapter)).merge_and_unload()
    for name, p in reference.named_parameters():
        torch.testing.assert_close(merged[name], p, rtol=0, atol=0)
    record = json.loads((out / MERGED_RECORD).read_text())
    assert record["adapter_sha256"] == adapter_sha256(adapter) == fine_tune_sha256(str(out), None)
    assert fine_tune_sha256("tiny", None) is None


def test_the_adapter_digest_covers_every_file_s_name_and_bytes_and_not_its_folder(tmp_path):
    """A copy elsewhere has the same digest; an edited adapter_config.json, an edited weight or a renamed file
    change it."""
    from mmlnb_dist.recipes.vlm.model import adapter_sha256

    a = tmp_path / "a"
    (a / "sub").mkdir(parents=True)
    (a / "adapter_config.json").write_text('{"r": 4}')
    (a / "adapter_model.safetensors").write_bytes(b"\x00\x01weights")
    (a / "sub" / "extra.txt").write_text("x")
    digest = adapter_sha256(a)
    assert adapter_sha256(shutil.copytree(a, tmp_path / "elsewhere" / "b")) == digest
    assert adapter_sha256(None) is None
    for edit in (lambda d: (d / "adapter_config.json").write_text('{"r": 8}'),
                 lambda d: (d / "adapter_model.safetensors").write_bytes(b"\x00\x02weights"),
                 lambda d: (d / "sub" / "extra.txt").write_text("y"),
                 lambda d: (d / "sub" / "extra.txt").rename(d / "sub" / "other.txt")):
        copy = shutil.copytree(a, tmp_path / f"edit{len(list(tmp_path.iterdir()))}")
        edit(copy)
        assert adapter_sha256(copy) != digest


# -- decoding -------------------------------------------------------------------------------------------

def test_seeded_sampling_applies_hf_s_processors_in_hf_s_order_only_where_they_change_something():
    """Penalty, temperature, top-k, top-p (HF's processors, HF's order) then the Gumbel noise; neutral values add
    no processor; greedy (no seeds) adds no noise; HF's own copies are switched off, other keys kept."""
    from transformers import (RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper,
                              TopPLogitsWarper)

    from mmlnb_dist.recipes.vlm.sampling import GumbelNoise, UnpaddedRepetitionPenalty, seeded_sampling

    mask = torch.tensor([[1, 1, 1, 1]])
    ids = torch.tensor([[5, 6, 7, 6]])
    scores = torch.randn(1, 40, generator=torch.Generator().manual_seed(0)) * 3
    kw = dict(do_sample=True, temperature=0.5, top_p=0.8, top_k=6, repetition_penalty=1.3, max_new_tokens=3)
    out = seeded_sampling(kw, [11], mask)
    procs = out["logits_processor"]
    assert [type(p) for p in procs] == [UnpaddedRepetitionPenalty, TemperatureLogitsWarper, TopKLogitsWarper,
                                        TopPLogitsWarper, GumbelNoise]
    want = scores.clone()
    for p in (RepetitionPenaltyLogitsProcessor(1.3), TemperatureLogitsWarper(0.5), TopKLogitsWarper(6),
              TopPLogitsWarper(0.8)):
        want = p(ids, want)
    got = scores.clone()
    for p in procs[:-1]:
        got = p(ids, got)
    torch.testing.assert_close(got, want)
    assert int(torch.isfinite(got).sum()) in range(1, 7)  # top-k 6 kept at most 6 tokens, top-p at least one
    assert out["max_new_tokens"] == 3 and out["do_sample"] is False
    assert all(out[k] is None for k in ("temperature", "top_p", "top_k", "repetition_penalty"))
    neutral = seeded_sampling(dict(do_sample=True, temperature=1.0, top_p=1.0, top_k=None,
                                   repetition_penalty=1.0), [11], mask)
    assert [type(p) for p in neutral["logits_processor"]] == [GumbelNoise]
    top_k_only = seeded_sampling(dict(do_sample=True, top_k=6), [11], mask)["logits_processor"]
    kept = top_k_only[0](ids, scores.clone())
    assert torch.equal(torch.isfinite(kept[0]), torch.isin(torch.arange(40), scores[0].topk(6).indices))
    greedy = seeded_sampling(dict(do_sample=False, repetition_penalty=1.2), None, mask)
    assert [type(p) for p in greedy["logits_processor"]] == [UnpaddedRepetitionPenalty]


def test_decoding_presets_greedy_by_default_and_overrides_replace_the_authors_values():
    """Greedy is do_sample=False with a neutral penalty (never the model's own); the authors' preset is SPEC 2's
    values, each replaced by a given override."""
    from mmlnb_dist.recipes.vlm.config import GenerationConfig
    from mmlnb_dist.recipes.vlm.model import AUTHORS_SAMPLING, decoding_settings

    assert decoding_settings(GenerationConfig()) == dict(do_sample=False, temperature=None, top_p=None, top_k=None,
                                                         repetition_penalty=1.0)
    assert decoding_settings(GenerationConfig(repetition_penalty=1.1))["repetition_penalty"] == 1.1
    assert decoding_settings(GenerationConfig(preset="authors")) == AUTHORS_SAMPLING
    assert AUTHORS_SAMPLING == dict(do_sample=True, temperature=0.3, top_p=0.9, top_k=50, repetition_penalty=1.2)
    over = decoding_settings(GenerationConfig(preset="authors", temperature=0.7, top_p=0.5, top_k=3,
                                              repetition_penalty=1.0))
    assert over == dict(do_sample=True, temperature=0.7, top_p=0.5, top_k=3, repetition_penalty=1.0)


# -- memory estimate ------------------------------------------------------------------------------------

def test_memory_terms_by_hand_and_each_setting_moves_the_estimate_the_right_way():
    """Each term against its formula; offloading, QLoRA, a smaller micro batch or rank lower the estimate, turning
    gradient checkpointing off raises it; a budget equal to the estimate fits."""
    from mmlnb_dist.recipes.vlm.memory import GIB, QwenVLDims, count_params, estimate_memory, lora_params

    d = QwenVLDims()
    est = estimate_memory(d, lora_r=8, micro_batch=2, prompt_tokens=40, answer_tokens=100)
    seq = 100 + 40 + 100  # 256 px -> 100 image tokens
    assert est.seq_len == seq and est.lora_params == lora_params(d, 8)
    tokens = 2 * seq
    p = est.parts_gib
    assert p["logits"] * GIB == pytest.approx(tokens * d.vocab * 10)
    assert p["lora_weights_grads_adam"] * GIB == pytest.approx(lora_params(d, 8) * 18)
    assert p["activations"] * GIB == pytest.approx(
        d.layers * tokens * d.hidden * 2 + tokens * (16 * d.hidden + 3 * d.intermediate) * 2)
    assert p["base_weights"] * GIB == pytest.approx(count_params(d)["total"] * 2)
    assert est.total_gib == pytest.approx(sum(p.values())) and p["cuda_overhead"] == 1.5
    q = estimate_memory(d, lora_r=8, micro_batch=2, prompt_tokens=40, answer_tokens=100, weight_bits=4)
    assert q.parts_gib["base_weights"] * GIB == pytest.approx(count_params(d)["total"] * 4.5 / 8)
    off = estimate_memory(d, lora_r=8, micro_batch=2, prompt_tokens=40, answer_tokens=100, offload_optimizer=True)
    assert off.parts_gib["lora_weights_grads_adam"] * GIB == pytest.approx(lora_params(d, 8) * 4)
    full = estimate_memory(d, lora_r=8, micro_batch=2, prompt_tokens=40, answer_tokens=100,
                           gradient_checkpointing=False)
    assert full.parts_gib["activations"] * GIB == pytest.approx(
        d.layers * tokens * (16 * d.hidden + 3 * d.intermediate) * 2)
    assert full.total_gib > est.total_gib > off.total_gib and q.total_gib < est.total_gib
    assert estimate_memory(d, micro_batch=1).total_gib < estimate_memory(d, micro_batch=2).total_gib
    assert estimate_memory(d, lora_r=8).total_gib < estimate_memory(d, lora_r=64).total_gib
    assert est.fits(est.total_gib) and not est.fits(est.total_gib - 0.01)


# -- quality --------------------------------------------------------------------------------------------

def test_quality_word_statistics_and_shares_by_hand(tmp_path):
    """Word counts 0, 1, 2, 3, 3, 9 (sorted): mean 3, min 0, max 9, median and p90 as numpy's percentiles (2.5 and
    6.0: the report gave the upper median 3 and, for p90, the max 9); one empty, two identical."""
    import io

    from PIL import Image

    from mmlnb_dist.data.build import SampleSpec, build_shards
    from mmlnb_dist.data.config import BuildConfig
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.recipes.vlm.quality import quality_report

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (120, 60, 150)).save(buf, format="PNG")
    texts = ["a b c", "one", "  ", "x y", "a b c", "w " * 9]
    specs = [SampleSpec(f"k{i}", "UD", buf.getvalue(), description=t) for i, t in enumerate(texts)]
    build_shards(specs, tmp_path / "d", BuildConfig(val_fraction=0.0, image_format="png", image_size=16),
                 ["UD", "PD", "D"], progress=False)
    report = quality_report(ShardSet.open(tmp_path / "d"))
    words = report["words"]
    assert report["n"] == 6 and report["distinct"] == 5
    lengths = [0, 1, 2, 3, 3, 9]
    assert (words["mean"], words["min"], words["max"]) == (3.0, 0.0, 9.0)
    assert (words["p50"], words["p90"]) == pytest.approx((np.percentile(lengths, 50), np.percentile(lengths, 90)))
    assert (words["p50"], words["p90"]) == pytest.approx((2.5, 6.0))
    assert report["empty_share"] == pytest.approx(1 / 6) and report["repeated_share"] == pytest.approx(2 / 6)
    assert report["reference"] is None


# -- guards ---------------------------------------------------------------------------------------------

def test_a_hub_id_is_looked_up_and_a_missing_local_path_is_refused(tmp_path, monkeypatch):
    """`org/name` and an existing folder are looked up (config.json); a missing path is refused without a look-up."""
    from mmlnb_dist.recipes.vlm import source

    asked = []
    monkeypatch.setattr(source, "require_hub_file", lambda name, file, err: asked.append((name, file)))
    source.check_vlm_loadable("tiny")
    source.check_vlm_loadable("Qwen/Qwen2.5-VL-7B-Instruct")
    source.check_vlm_loadable(str(tmp_path))
    assert asked == [("Qwen/Qwen2.5-VL-7B-Instruct", "config.json"), (str(tmp_path), "config.json")]
    for missing in (str(tmp_path / "nope"), "./models/nope", "a/b/c"):
        with pytest.raises(UserError, match="no such folder"):
            source.check_vlm_loadable(missing, "vlm.model")
    assert len(asked) == 2


def test_max_length_must_leave_room_for_one_answer_token_and_finetune_checks_run_before_the_folder(cache):
    """The prompt is measured with the largest image the bounds allow; max_length equal to it is refused, one more
    passes; finetune-vlm's model check runs the length, LoRA-name and prompt-text guards."""
    from PIL import Image

    from mmlnb_dist.recipes.vlm import model as V
    from mmlnb_dist.recipes.vlm.config import LoraConfig, VLMConfig
    from mmlnb_dist.recipes.vlm.preflight import check_finetune_model, check_prompt_fits, largest_prompt_tokens

    _, proc = _tiny(cache)
    n = largest_prompt_tokens(proc, "Describe.", PIX)
    assert n == len(V.encode_prompt(proc, Image.new("RGB", (56, 56)), "Describe.").input_ids)
    wide = V.load_processor(V.resolve_model_path("tiny", cache_dir=cache), 28 * 28, 112 * 112)
    assert largest_prompt_tokens(wide, "Describe.", 112 * 112) == len(
        V.encode_prompt(wide, Image.new("RGB", (112, 112)), "Describe.").input_ids) == n + 12  # 16 image tokens
    base = dict(model="tiny", prompt="Describe.", min_pixels=PIX, max_pixels=PIX, cache_dir=cache)
    check_prompt_fits(proc, VLMConfig(**base, max_length=n + 1))
    with pytest.raises(ConfigError, match=f"vlm.max_length={n}"):
        check_prompt_fits(proc, VLMConfig(**base, max_length=n))
    check_finetune_model(VLMConfig(**base, max_length=n + 1))
    with pytest.raises(ConfigError, match="vlm.max_length"):
        check_finetune_model(VLMConfig(**base, max_length=n))
    with pytest.raises(ConfigError, match="vlm.lora.target_modules"):
        check_finetune_model(VLMConfig(**base, max_length=n + 1, lora=LoraConfig(target_modules=["qproj"])))
    with pytest.raises(ConfigError, match="vision tokens"):
        check_finetune_model(VLMConfig(**{**base, "prompt": "<|vision_start|> Describe."}, max_length=n + 1))


def test_one_global_batch_of_pairs_is_enough_and_one_fewer_is_refused(tmp_path):
    """As many training pairs as one global batch is enough; one fewer is refused naming the key."""
    from mmlnb_dist.recipes.vlm.finetune import require_one_batch

    require_one_batch(8, 8, tmp_path)
    with pytest.raises(ConfigError, match="global_batch_size: 8 pairs per step.* has 7 training pairs"):
        require_one_batch(7, 8, tmp_path)


def test_describe_settings_differences_name_each_shaping_key_and_the_tiny_base(tmp_path):
    """Prompt, pixel bounds and (for an adapter on `tiny`) the tiny seed and tower are held to the fine-tuning
    run's; a hub id and a local copy of it count as one base; keys the run did not record are not compared."""
    from mmlnb_dist.recipes.vlm.config import VLMConfig
    from mmlnb_dist.recipes.vlm.trained_with import settings_differences

    given = VLMConfig(model="tiny", prompt="P", min_pixels=PIX, max_pixels=PIX, tiny_seed=1)
    trained = {"prompt": "P", "min_pixels": PIX, "max_pixels": PIX, "model": "tiny", "tiny_seed": 1,
               "tiny_vision": given.tiny_vision}
    assert settings_differences(given, "tiny", "adapter", trained) == []
    for key, value in (("prompt", "Q"), ("min_pixels", 28 * 28), ("max_pixels", 112 * 112), ("tiny_seed", 2)):
        diff = settings_differences(given, "tiny", "adapter", {**trained, key: value})
        assert len(diff) == 1 and diff[0].startswith(f"vlm.{key}: given"), diff
    assert settings_differences(given, "tiny", None, {**trained, "tiny_seed": 2}) == []  # merged: weights inside
    hub = {**trained, "model": "Qwen/Qwen2.5-VL-7B-Instruct"}
    assert settings_differences(given, str(tmp_path / "Qwen2.5-VL-7B-Instruct"), "adapter", hub) == []
    assert len(settings_differences(given, str(tmp_path / "Other"), "adapter", hub)) == 1
    assert settings_differences(given, "tiny", "adapter", {"prompt": "P"}) == []


def test_a_pair_is_counted_as_cut_exactly_when_encode_pair_cuts_its_answer(cache):
    """At max_length = prompt + answer (with <|im_end|>) the whole answer is trained and the pair is not counted;
    one token less cuts it, and it is counted."""
    import io

    from PIL import Image

    from mmlnb_dist.recipes.vlm import model as V
    from mmlnb_dist.recipes.vlm.batches import Pair
    from mmlnb_dist.recipes.vlm.pair_lengths import cut_keys

    _, proc = _tiny(cache)
    buf = io.BytesIO()
    Image.new("RGB", (56, 56), (200, 100, 50)).save(buf, format="PNG")
    text = "Sheets of small round blue cells."
    pair = Pair("k0", buf.getvalue(), text, "UD")
    n_prompt = len(V.encode_prompt(proc, V.as_rgb(pair.image), "Describe.").input_ids)
    n_answer = len(proc.tokenizer(text + V.END_OF_TURN, add_special_tokens=False)["input_ids"])
    fits = n_prompt + n_answer
    whole = V.encode_pair(proc, pair.image, "Describe.", text, fits)
    assert len(whole.input_ids) == fits and cut_keys(proc, [pair], "Describe.", fits) == []
    cut = V.encode_pair(proc, pair.image, "Describe.", text, fits - 1)
    assert len(cut.input_ids) == fits - 1 and cut_keys(proc, [pair], "Describe.", fits - 1) == ["k0"]
    assert cut.labels[-1] == cut.input_ids[-1] == proc.tokenizer.convert_tokens_to_ids(V.END_OF_TURN)
