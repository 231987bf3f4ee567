"""The fusion recipe's CPU speed levers keep results (issue 15, item 2), and bf16 training runs with batch norm.

- `distributed.precision=bf16`: DeepSpeed casts the parameters to bf16 but leaves the batch-norm running statistics
  (buffers) in fp32, and batch norm then refuses the mix ("expected scalar type BFloat16 but found Float"); the
  engine casts floating buffers to the parameters' dtype, so a bf16 run with a CNN trains.
- `fusion.cpu_autocast` (bf16 autocast around forward + loss, fp32 master weights) reaches metrics within a stated
  tolerance of fp32 on the tiny set;
- `fusion.channels_last` gives the same encoder outputs as contiguous tensors (1e-5);
- `fusion.compile` gives the same outputs as eager (1e-4).
"""
from __future__ import annotations

import math

import pytest
import torch

from support.fusion import make_shards, tiny_config

# Phase 0 (epoch 0): both encoders train (the phase the levers target); phase 1 (epoch 1): both frozen.
PHASES = "[{start_epoch: 0}, {start_epoch: 1, train_image_encoder: false, train_text_encoder: false}]"
SHORT = ["train.epochs=2", f"fusion.curriculum.phases={PHASES}", "run.seed=0"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("levers"), n=60, size=64)


def test_bf16_precision_trains_a_cnn_with_batch_norm(shards, tmp_path):
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    cfg = tiny_config(shards, tmp_path / "runs", "bf16", [*SHORT, "distributed.precision=bf16"])
    result = run(FusionRecipe, cfg)
    assert math.isfinite(result["best_value"]) and math.isfinite(result["val/accuracy"])


def _pair(**levers):
    """(reference classifier, a copy with the levers on): the cpu-demo tiny encoders, the same weights."""
    import copy

    from mmlnb_dist.recipes.fusion.config import FusionModelConfig
    from mmlnb_dist.recipes.fusion.model import build_classifier

    torch.manual_seed(0)
    cfg = FusionModelConfig(image_encoder={"name": "tiny", "pretrained": False},
                            text_encoder={"name": "tiny-bert", "max_length": 32})
    ref = build_classifier(cfg, 4)
    for module in ref.modules():  # compiled dropout draws other random numbers: compare without it
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return ref, copy.deepcopy(ref).speed_up(**levers)


def _inputs(model):
    torch.manual_seed(1)
    texts = [f"tumour cells with nuclear atypia, sample {i}" for i in range(8)]
    return {"pixel_values": torch.randn(8, 3, 64, 64), **model.text_encoder.tokenize(texts)}


def _outputs_and_grads(model, inputs):
    """Logits in eval mode, then one training-mode forward + backward: (logits, train logits, gradients)."""
    model.eval()
    with torch.no_grad():
        eval_logits = model(**inputs)["logits"]
    model.train()  # batch norm on batch statistics
    out = model(**inputs)
    model.zero_grad()
    (out["logits"].square().mean() + out["image_logits"].square().mean()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return eval_logits, out["logits"].detach(), grads


def _assert_same(ref, fast, atol):
    inputs = _inputs(ref)
    a, b = _outputs_and_grads(ref, inputs), _outputs_and_grads(fast, inputs)
    torch.testing.assert_close(b[0], a[0], atol=atol, rtol=0)
    torch.testing.assert_close(b[1], a[1], atol=atol, rtol=0)
    assert b[2].keys() == a[2].keys()
    for name in a[2]:
        torch.testing.assert_close(b[2][name], a[2][name], atol=atol, rtol=1e-4, msg=name)


def test_channels_last_gives_the_same_outputs_and_gradients(tmp_path):
    ref, fast = _pair(channels_last=True)
    conv = next(m for m in fast.image_encoder.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    _assert_same(ref, fast, atol=1e-5)
    assert fast.state_dict().keys() == ref.state_dict().keys()


@pytest.mark.slow  # compiling the two encoders takes tens of seconds on 2 cores
def test_compiled_encoders_give_the_same_outputs_and_gradients(tmp_path):
    ref, fast = _pair(compile=True)
    _assert_same(ref, fast, atol=1e-4)
    assert fast.state_dict().keys() == ref.state_dict().keys()  # checkpoints and exports keep their names


# bf16 keeps 8 bits of mantissa: on the tiny set (15 val samples) the runs may part by a sample or two, and the
# validation loss by a few hundredths. The stated tolerance: accuracy within 2 samples, loss within 0.05.
AUTOCAST_ACCURACY_SAMPLES, AUTOCAST_LOSS_TOLERANCE = 2, 0.05


def test_cpu_autocast_reaches_the_metrics_of_fp32(shards, tmp_path):
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    results = {}
    for name, extra in (("fp32", []), ("autocast", ["fusion.cpu_autocast=true"])):
        cfg = tiny_config(shards, tmp_path / "runs", name, [*SHORT, "fusion.cache_frozen_features=false", *extra])
        results[name] = run(FusionRecipe, cfg)
    fp32, fast = results["fp32"], results["autocast"]
    n_val = sum(sum(row) for row in fp32["val/confusion_matrix"])
    assert abs(fast["val/accuracy"] - fp32["val/accuracy"]) <= AUTOCAST_ACCURACY_SAMPLES / n_val + 1e-9
    assert abs(fast["val/loss"] - fp32["val/loss"]) <= AUTOCAST_LOSS_TOLERANCE
    # The lever was really on: bf16 arithmetic moves the loss at least a little.
    assert fast["val/loss"] != fp32["val/loss"]


def test_buffers_follow_their_parameters_dtype_and_counters_stay_integer():
    from mmlnb_dist.core.engine import match_buffers_to_parameters

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    for p in model.parameters():  # what DeepSpeed's bf16 mode does: parameters only
        p.data = p.data.to(torch.bfloat16)
    bn = model[1]
    assert bn.running_mean.dtype == torch.float32
    match_buffers_to_parameters(model)
    assert bn.running_mean.dtype == bn.running_var.dtype == torch.bfloat16
    assert bn.num_batches_tracked.dtype == torch.long
    model.train()(torch.randn(2, 3, 8, 8, dtype=torch.bfloat16))  # batch norm accepts the mix now


def test_channels_last_run_trains_under_deepspeed(shards, tmp_path):
    """DeepSpeed's start-up broadcast views every parameter as bytes, which a channels-last weight refuses
    ("self.stride(-1) must be 1"): the recipe converts the layout after the engine is built."""
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    cfg = tiny_config(shards, tmp_path / "runs", "cl", [*SHORT, "fusion.channels_last=true"])
    result = run(FusionRecipe, cfg)
    assert math.isfinite(result["val/loss"])


def test_channels_last_with_zero_or_mixed_precision_is_refused_before_work(shards, tmp_path):
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    for extra in (["distributed.zero_stage=1"], ["distributed.precision=bf16"]):
        cfg = tiny_config(shards, tmp_path / "runs", "cl", [*SHORT, "fusion.channels_last=true", *extra])
        with pytest.raises(ConfigError, match="fusion.channels_last"):
            FusionRecipe.check(cfg, DistEnv.from_environment())
