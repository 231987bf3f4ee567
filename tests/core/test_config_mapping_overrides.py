"""An override whose value is a mapping changes the keys it names and keeps the rest of the profile's section.

`data.loader={num_workers: 0}` replaced the whole `data.loader` of the profile, so the other settings fell back to
the built-in defaults without a word (cpu-demo's image_size 64 became 224, its HED stain jitter none), and
`fusion.curriculum={ramp_end: 5}` brought back the default phases. A mapping is now merged into the section, at
every depth (as jsonargparse, litgpt and OmegaConf merge); a list still replaces the list."""
from __future__ import annotations

from mmlnb_dist.config import load_config


def test_a_mapping_override_keeps_the_rest_of_the_profiles_section():
    profile = load_config("cpu-demo").data.loader
    loader = load_config("cpu-demo", ["data.loader={num_workers: 0}"]).data.loader
    assert loader.num_workers == 0
    assert loader.model_dump(exclude={"num_workers"}) == profile.model_dump(exclude={"num_workers"})
    assert (loader.image_size, loader.stain.kind, loader.shuffle_buffer) == (64, "hed", 200)


def test_a_nested_mapping_is_merged_at_every_depth():
    loader = load_config("cpu-demo", ["data.loader={stain: {sigma: 0.05}}"]).data.loader
    assert (loader.stain.kind, loader.stain.sigma, loader.stain.bias) == ("hed", 0.05, 0.01)
    assert loader.image_size == 64


def test_a_mapping_override_of_a_section_keeps_its_profile_list_and_a_list_still_replaces():
    profile = load_config("cpu-demo").fusion.curriculum
    merged = load_config("cpu-demo", ["fusion.curriculum={ramp_end: 5}"]).fusion.curriculum
    assert merged.ramp_end == 5 and merged.ramp_start == profile.ramp_start and merged.phases == profile.phases
    replaced = load_config("cpu-demo", ["fusion.curriculum={phases: [{start_epoch: 0}]}"]).fusion.curriculum
    assert [p.start_epoch for p in replaced.phases] == [0] and replaced.ramp_end == profile.ramp_end


def test_a_mapping_override_of_one_list_entry_keeps_its_other_settings():
    phase = load_config("cpu-demo", ["fusion.curriculum.phases.2={start_epoch: 7}"]).fusion.curriculum.phases[2]
    assert (phase.start_epoch, phase.train_image_encoder, phase.train_text_encoder) == (7, False, False)
