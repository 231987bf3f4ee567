"""The precision image features are computed in is the one `distributed.precision` asks for (autocast only for
bf16/fp16 on CUDA, fp32 otherwise), is part of what the features are (`identity.precision`), and a fusion run
refuses features computed in another precision than its own frozen encoder would run in, naming both."""
from __future__ import annotations

import json

import pytest
import torch

from support.fusion import make_shards, tiny_config

FROZEN = ["train.epochs=1", "fusion.curriculum.ramp_start=0", "fusion.curriculum.ramp_end=1",
          "fusion.curriculum.phases=[{start_epoch: 0, train_image_encoder: false, train_text_encoder: false}]"]


@pytest.mark.filterwarnings("ignore:CUDA is not available")  # the context is only built here, never entered
@pytest.mark.parametrize("device,asked,computed", [
    ("cuda", "fp32", "fp32"), ("cuda", "bf16", "bf16"), ("cuda", "fp16", "fp16"),
    ("cpu", "fp32", "fp32"), ("cpu", "bf16", "fp32")])
def test_extraction_computes_in_the_precision_asked_for_on_cuda_and_fp32_on_the_cpu(device, asked, computed):
    from mmlnb_dist.features.extract import extraction_autocast, extraction_precision

    assert extraction_precision(torch.device(device), asked) == computed
    ctx = extraction_autocast(torch.device(device), asked)
    if computed == "fp32":
        assert not isinstance(ctx, torch.autocast)  # the encoder runs in its own float32
    else:
        assert isinstance(ctx, torch.autocast)
        assert ctx.fast_dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[computed]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("prec"), n=45, size=32)


def extract(shards, out, precision="fp32"):
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.core.sections import DistributedConfig
    from mmlnb_dist.features import extract_features
    from mmlnb_dist.models.config import ImageEncoderConfig

    extract_features(ImageEncoderConfig(name="tiny", pretrained=False), shards, out, env=DistEnv(), seed=0,
                     dist=DistributedConfig(precision=precision), batch_size=16, image_size=32, progress=False)
    return out


def record(out):
    return json.loads((out / "provenance.json").read_text())


def test_the_precision_is_recorded_in_the_identity(shards, tmp_path):
    out = extract(shards, tmp_path / "f", precision="bf16")  # on the CPU: computed in fp32, and recorded so
    assert record(out)["record"]["identity"]["precision"] == "fp32"
    assert record(out)["record"]["compute"]["dtype"] == "float32"


def as_if_extracted_in(out, identity_precision, compute_dtype):
    """Rewrite the record as a GPU extraction would have written it (this machine has no GPU)."""
    rec = record(out)
    if identity_precision is None:
        rec["record"]["identity"].pop("precision", None)  # a folder from before the precision was recorded
    else:
        rec["record"]["identity"]["precision"] = identity_precision
    rec["record"]["compute"]["dtype"] = compute_dtype
    (out / "provenance.json").write_text(json.dumps(rec))
    return out


def check(cfg):
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    FusionRecipe.check(cfg, DistEnv())


def config(shards, features, tmp_path, *extra):
    return tiny_config(shards, tmp_path / "runs", "p", [*FROZEN, "data.loader.image_size=32",
                                                        f"fusion.image_features={features}", *extra])


def test_features_of_another_precision_than_the_run_are_refused_naming_both(shards, tmp_path):
    from mmlnb_dist.features import FeaturesError

    out = extract(shards, tmp_path / "f")
    check(config(shards, out, tmp_path))  # fp32 features, fp32 run: fits
    as_if_extracted_in(out, "bf16", "bfloat16-autocast")
    with pytest.raises(FeaturesError, match=r"(?s)bf16.*distributed\.precision=fp32"):
        check(config(shards, out, tmp_path))


def test_a_folder_from_before_the_precision_record_is_judged_by_its_compute_dtype(shards, tmp_path):
    from mmlnb_dist.features import FeaturesError

    out = as_if_extracted_in(extract(shards, tmp_path / "f"), None, "float32")
    check(config(shards, out, tmp_path))  # extracted in fp32 on the CPU: fits an fp32 run
    as_if_extracted_in(out, None, "bfloat16-autocast")  # every GPU extraction before: bf16 whatever was asked
    with pytest.raises(FeaturesError, match=r"(?s)bf16.*distributed\.precision=fp32"):
        check(config(shards, out, tmp_path))
