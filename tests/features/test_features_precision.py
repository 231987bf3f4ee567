"""The precision image features are computed in is the one `distributed.precision` asks for (the encoder cast to
bf16/fp16 as a training run casts it, on the CPU too; fp16 there is refused as for training), is part of what the
features are (`identity.precision`), and a fusion run refuses features computed in another precision than its
own frozen encoder would run in, naming both."""
from __future__ import annotations

import json

import pytest
import torch

from support.fusion import make_shards, tiny_config

FROZEN = ["train.epochs=1", "fusion.curriculum.ramp_start=0", "fusion.curriculum.ramp_end=1",
          "fusion.curriculum.phases=[{start_epoch: 0, train_image_encoder: false, train_text_encoder: false}]"]


@pytest.mark.parametrize("device,asked,computed", [
    ("cuda", "fp32", "fp32"), ("cuda", "bf16", "bf16"), ("cuda", "fp16", "fp16"),
    ("cpu", "fp32", "fp32"), ("cpu", "bf16", "bf16")])
def test_extraction_computes_in_the_precision_asked_for(device, asked, computed):
    from mmlnb_dist.features.extract import extraction_precision

    assert extraction_precision(torch.device(device), asked) == computed


def test_bf16_features_are_those_of_the_encoder_cast_as_a_training_run_casts_it():
    # A bf16 fusion run's DeepSpeed engine casts the frozen encoder's weights to bf16 (and batch norm's statistics:
    # core.engine); the extraction ran bf16 autocast on fp32 weights instead: 3.5% other numbers on
    # efficientnet_lite0, accepted as "bf16" by the run. (Run on the CPU here: the real path is CUDA only.)
    import copy

    from mmlnb_dist.data.preprocess import ImageSamplePreprocess
    from mmlnb_dist.features.extract import _ShardEncoder, cast_as_training_does
    from mmlnb_dist.models.config import ImageEncoderConfig
    from mmlnb_dist.models.encoders import build_image_encoder

    torch.manual_seed(0)
    encoder = build_image_encoder(ImageEncoderConfig(name="tiny", pretrained=False)).eval()
    for module in encoder.modules():  # statistics other than 0/1, so that their precision shows
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    reference = copy.deepcopy(encoder).bfloat16()
    import io

    import numpy as np
    from PIL import Image

    png = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((16, 16, 3)) * 255).astype("uint8")).save(png, format="png")
    raws = [{"__key__": "k", "png": png.getvalue()}]
    preprocess = ImageSamplePreprocess(16, None, augment=False, mean=encoder.mean, std=encoder.std, text=False)
    work = _ShardEncoder(cast_as_training_does(copy.deepcopy(encoder), "bf16"), preprocess, torch.device("cpu"), 4, 1,
                         "bf16")
    keys, got, skipped = work.encode_shard(raws, "train-000000.tar", lambda n: None)
    work.close()
    batch = preprocess.finalize(preprocess.collate([preprocess.decode(raws[0], work.ctx)]))
    with torch.no_grad():
        want = reference(batch["image"].bfloat16()).float()
        fp32 = encoder(batch["image"])
    assert keys == ["k"] and not skipped
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, fp32)


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
    out = extract(shards, tmp_path / "f", precision="bf16")  # (on the CPU too: a bf16 run computes in it there)
    assert record(out)["record"]["identity"]["precision"] == "bf16"
    assert record(out)["record"]["compute"]["dtype"] == "bfloat16"


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


def test_bf16_features_made_under_autocast_are_refused_by_a_bf16_run(shards, tmp_path):
    from mmlnb_dist.features import FeaturesError

    out = as_if_extracted_in(extract(shards, tmp_path / "f"), "bf16", "bfloat16")  # cast, as the run casts it
    check(config(shards, out, tmp_path, "distributed.precision=bf16"))
    as_if_extracted_in(out, "bf16", "bfloat16-autocast")  # an extraction before this version
    with pytest.raises(FeaturesError, match=r"(?s)under bf16 autocast.*Extract them again.*distributed\.precision=bf16"):
        check(config(shards, out, tmp_path, "distributed.precision=bf16"))


def test_on_the_cpu_bf16_features_are_those_a_bf16_run_computes_and_it_trains_on_them(shards, tmp_path):
    """A bf16 run on the CPU casts its frozen encoder to bf16 (DeepSpeed runs bf16 there); the extraction computed
    fp32 there whatever was asked, so that run refused every CPU extraction and its remedy ("extract them again
    with distributed.precision=bf16") gave fp32 features again."""
    import copy

    from mmlnb_dist.core.engine import seed_everything
    from mmlnb_dist.data.preprocess import ImageSamplePreprocess, SampleContext
    from mmlnb_dist.data.reader import iter_shard_samples
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.features import load_features
    from mmlnb_dist.models.config import ImageEncoderConfig
    from mmlnb_dist.models.encoders import build_image_encoder

    out = extract(shards, tmp_path / "f", precision="bf16")
    assert record(out)["record"]["identity"]["precision"] == "bf16"
    assert record(out)["record"]["compute"]["dtype"] == "bfloat16"
    check(config(shards, out, tmp_path, "distributed.precision=bf16"))  # the bf16 run takes them

    seed_everything(0)  # the reference: the encoder the run builds with run.seed 0, cast as DeepSpeed casts it
    encoder = build_image_encoder(ImageEncoderConfig(name="tiny", pretrained=False)).eval()
    cast = copy.deepcopy(encoder).bfloat16()
    for name, buf in encoder.named_buffers():  # DeepSpeed leaves batch norm's statistics; the run casts them too
        if buf.is_floating_point():
            cast.get_buffer(name).data = buf.data.bfloat16()
    s = ShardSet.open(shards)
    raws = [r for _, _, e in s.entries() for r in iter_shard_samples(s.root / e["file"])][:8]
    prep = ImageSamplePreprocess(32, None, augment=False, mean=encoder.mean, std=encoder.std, text=False)
    batch = prep.finalize(prep.collate([prep.decode(r, SampleContext(seed=0, epoch=0, train=False)) for r in raws]))
    with torch.no_grad():
        want, fp32 = cast(batch["image"].bfloat16()).float(), encoder(batch["image"])
    got = torch.stack([load_features(out)[k] for k in batch["key"]])
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, fp32)


def test_fp16_extraction_on_the_cpu_is_refused_as_an_fp16_run_there_is(shards, tmp_path):
    from mmlnb_dist.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"distributed\.precision: fp16 needs a GPU"):
        extract(shards, tmp_path / "f", precision="fp16")
    assert not (tmp_path / "f").exists()
