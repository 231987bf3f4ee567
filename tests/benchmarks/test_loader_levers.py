"""The loader levers measured in benchmarks/data_throughput.py --peers (issue 15, item 1) keep results.

- `ImageTransform.normalise_batch` (one multiply-add per element since the lever) equals torchvision's
  ToTensor + Normalize, the reference the authors' loader uses, to float32 rounding.
- The peer pipelines of the benchmark see the same samples with the same pixels as our loader (so their rows
  compare loader machinery on equal work).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
MEANS_STDS = [((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
              ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))]


@pytest.mark.parametrize("mean,std", MEANS_STDS)
def test_batch_normalisation_matches_torchvision_normalize(mean, std):
    from torchvision import transforms as T

    from mmlnb_dist.data.images import ImageTransform

    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    batch[0] = 0
    batch[1] = 255
    ours = ImageTransform(16, mean=mean, std=std).normalise_batch(torch.from_numpy(batch))
    reference = torch.stack([T.Normalize(mean, std)(T.ToTensor()(img)) for img in batch])
    assert ours.dtype == torch.float32 and ours.shape == (5, 3, 16, 16) and ours.is_contiguous()
    assert torch.allclose(ours, reference, rtol=0, atol=2e-6), float((ours - reference).abs().max())


def test_peer_pipelines_see_our_samples_and_pixels(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from peers.loaders import count_batches, sample_array, shard_images, webdataset_loader

    from mmlnb_dist.data.shardset import ShardSet
    from support.fusion import make_shards

    shards = ShardSet.open(make_shards(tmp_path, n=40, size=48))
    paths = [p for p, _ in shards.shards("train")]
    rows = shard_images(paths)
    assert len(rows) == sum(n for _, n in shards.shards("train"))
    assert count_batches(webdataset_loader(paths, batch=8, workers=0, size=32, shuffle=1)) == len(rows)
    # the same per-sample work as our loader's preprocess (fusion recipe's, no augmentation)
    from mmlnb_dist.data.preprocess import ImageSamplePreprocess, SampleContext

    pre = ImageSamplePreprocess(32, None, augment=False, mean=(0, 0, 0), std=(1, 1, 1), text=False)
    key, data, _ = rows[0]
    ours = pre.decode({"__key__": key, "jpg" if data[:2] == b"\xff\xd8" else "png": data}, SampleContext(0, 0, False))
    assert np.array_equal(ours["image"], sample_array(data, 32))
