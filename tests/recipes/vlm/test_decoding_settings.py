"""How describe chooses tokens is what its config says and nothing else: greedy is greedy whatever the model's own
generation config carries (Qwen2.5-VL's sets repetition_penalty 1.05, which HF applies to greedy decoding unless
told otherwise), `vlm.generation.temperature/top_p/top_k/repetition_penalty` replace a sampling preset's values,
sampling settings under greedy are refused before any work, and the provenance records the settings in effect.
In-process, seconds (the random tiny VLM)."""
from __future__ import annotations

import pytest

from support.vlm import noise_images

PROMPT = "You are a specialized pathologist, please describe what you see microscopically."


def test_greedy_ignores_a_repetition_penalty_in_the_models_generation_config(tiny_56_112):
    import torch

    from mmlnb_dist.recipes.vlm import model as V
    from mmlnb_dist.recipes.vlm.config import GenerationConfig

    model, proc = tiny_56_112
    gen = GenerationConfig(max_new_tokens=16)
    images = noise_images(0)
    plain = V.generate_descriptions(model, proc, images, PROMPT, gen)
    batch = V.generation_batch(proc, images, PROMPT)
    kwargs = {k: v for k, v in V.generation_kwargs(gen, proc).items() if k != "repetition_penalty"}
    saved = model.generation_config.repetition_penalty
    try:
        model.generation_config.repetition_penalty = 50.0  # what a checkpoint's generation_config.json may carry
        with torch.no_grad():  # HF applies it when the call does not say otherwise: it does change the text here
            penalised = model.generate(**batch, **kwargs)[:, batch["input_ids"].shape[1]:]
        texts = proc.tokenizer.batch_decode(penalised, skip_special_tokens=True)
        assert [t.strip() for t in texts] != plain
        assert V.generate_descriptions(model, proc, images, PROMPT, gen) == plain
    finally:
        model.generation_config.repetition_penalty = saved


def test_overrides_replace_the_presets_values_and_one_token_sampling_is_penalised_greedy(tiny_56_112):
    """authors + top_k 1 keeps one token per step, so the Gumbel noise cannot change it: exactly greedy decoding
    with the authors' repetition penalty (1.2), which ignores each row's left padding like the sampler does."""
    from mmlnb_dist.recipes.vlm import model as V
    from mmlnb_dist.recipes.vlm.config import GenerationConfig

    model, proc = tiny_56_112
    assert V.decoding_settings(GenerationConfig(preset="authors", temperature=0.7, top_p=0.5)) == {
        "do_sample": True, "temperature": 0.7, "top_p": 0.5, "top_k": 50, "repetition_penalty": 1.2}
    assert V.decoding_settings(GenerationConfig()) == {
        "do_sample": False, "temperature": None, "top_p": None, "top_k": None, "repetition_penalty": 1.0}

    images = noise_images(1)
    one_token = V.generate_descriptions(model, proc, images, PROMPT,
                                        GenerationConfig(preset="authors", top_k=1, max_new_tokens=16))
    penalised = GenerationConfig(repetition_penalty=1.2, max_new_tokens=16)
    assert V.generate_descriptions(model, proc, images, PROMPT, penalised) == one_token
    assert V.generate_descriptions(model, proc, images, PROMPT, GenerationConfig(max_new_tokens=16)) != one_token
    large = noise_images(2, n=1, size=112)[0]  # a longer prompt: images[0] is left-padded beside it
    assert V.generate_descriptions(model, proc, [images[0], large], PROMPT, penalised)[0] == one_token[0]


def test_sampling_settings_under_greedy_are_refused_and_the_provenance_records_what_is_used(tmp_path):
    from mmlnb_dist.config import load_config
    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.recipes.vlm.describe import provenance

    from support.fusion import make_shards

    with pytest.raises(ConfigError, match=r"vlm\.generation.*temperature, top_k.*preset: authors.*"
                                          r"vlm\.generation\.temperature=null vlm\.generation\.top_k=null"):
        load_config("cpu-demo", ["vlm.generation.preset=greedy", "vlm.generation.temperature=0.5",
                                 "vlm.generation.top_k=5"])
    shards = make_shards(tmp_path / "s", n=12, size=32)
    tiny = [f"vlm.cache_dir={tmp_path / 'cache'}", "vlm.tiny_vision=random"]
    cfg = load_config("cpu-demo", [*tiny, "vlm.generation.preset=authors",
                                   "vlm.generation.temperature=0.7", "vlm.generation.repetition_penalty=1.0"])
    settings = provenance(cfg, "tiny", None, ShardSet.open(shards), 1)["generation"]
    assert settings["temperature"] == 0.7 and settings["repetition_penalty"] == 1.0 and settings["top_p"] == 0.9
    assert settings["draw"] == "per-image-gumbel"
    greedy = load_config("cpu-demo", [*tiny, "vlm.generation.preset=greedy", "vlm.generation.temperature=null"])
    assert provenance(greedy, "tiny", None, ShardSet.open(shards), 1)["generation"]["repetition_penalty"] == 1.0


def test_an_output_described_in_bf16_is_not_continued_in_fp32_or_fp16(tmp_path):
    """Greedy text depends on the dtype: a describe output made at one dtype and continued at another would hold
    two decodings under one name, so the dtype is part of its provenance (float32, the CPU's, is left out so that
    outputs recorded before the dtype was continue)."""
    import torch

    from mmlnb_dist.config import load_config
    from mmlnb_dist.core.provenance import ProvenanceError, check_or_record
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.recipes.vlm.describe import describe_dtype, provenance

    from support.fusion import make_shards

    cfg = load_config("cpu-demo", [f"vlm.cache_dir={tmp_path / 'cache'}", "vlm.tiny_vision=random"])
    source = ShardSet.open(make_shards(tmp_path / "s", n=12, size=32))
    assert describe_dtype(torch.device("cpu"), "bf16") == torch.float32
    assert describe_dtype(torch.device("cuda"), "bf16") == torch.bfloat16
    assert describe_dtype(torch.device("cuda"), "fp32") == torch.float32
    record = tmp_path / "provenance.json"
    check_or_record(record, provenance(cfg, "tiny", None, source, 1, torch.bfloat16), what="out")
    check_or_record(record, provenance(cfg, "tiny", None, source, 2, torch.bfloat16), what="out",
                    allow=("world_size",))
    for other in (torch.float16, torch.float32):
        with pytest.raises(ProvenanceError, match=r"dtype: 'bfloat16' -> "):
            check_or_record(record, provenance(cfg, "tiny", None, source, 1, other), what="out",
                            allow=("world_size",))
    assert "dtype" not in provenance(cfg, "tiny", None, source, 1)
