"""Mutation audit of staged freezing and frozen-feature caching (`phases.PhaseController`), on a tiny real shard set
and the real train loader: which parameter groups a phase freezes, entering a phase once (and again when forced),
caches only for frozen encoders whose input is not augmented, caches kept on disk under `run.cache_dir` and found
again, and cache identities that keep features of another text length or image size apart."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from support.fusion import make_shards, tiny_config

PHASES = ("fusion.curriculum.phases=[{start_epoch: 0, train_text_encoder: false}, {start_epoch: 2},"
          " {start_epoch: 4, train_image_encoder: false, train_text_encoder: false}]")


class _Text(nn.Module):
    """A small text encoder whose output depends on `max_length` (it reads only that many characters)."""

    def __init__(self, max_length: int, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.name, self.pooling, self.max_length, self.out_dim = "char-text", "mean", max_length, 8
        self.embed = nn.Embedding(64, self.out_dim)

    def tokenize(self, texts):
        ids = [[1 + ord(c) % 63 for c in t[:self.max_length]] or [1] for t in texts]
        width = max(len(i) for i in ids)
        input_ids = torch.tensor([i + [0] * (width - len(i)) for i in ids])
        return {"input_ids": input_ids, "attention_mask": (input_ids > 0).long()}

    def forward(self, input_ids, attention_mask):
        mask = attention_mask.unsqueeze(-1).float()
        return (self.embed(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("phases"), n=30, size=32)


def _model(max_length: int = 12):
    from mmlnb_dist.models.config import ImageEncoderConfig
    from mmlnb_dist.models import build_image_encoder
    from mmlnb_dist.recipes.fusion.config import FusionModelConfig
    from mmlnb_dist.recipes.fusion.model import FusionClassifier

    torch.manual_seed(0)
    image = build_image_encoder(ImageEncoderConfig(name="tiny", pretrained=False))
    return FusionClassifier(image, _Text(max_length), FusionModelConfig(), num_classes=3).train()


def _controller(shards, tmp_path, model, extra=(), name="p"):
    """A `PhaseController` as the recipe builds it: the eval-mode train loader, a schedule that records what it
    is told is frozen."""
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.data.loader import build_loader
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.recipes.fusion.phases import PhaseController
    from mmlnb_dist.recipes.fusion.steps import preprocess_for

    cfg = tiny_config(shards, tmp_path / "runs", name, [PHASES, f"run.cache_dir={tmp_path / 'cache'}",
                                                        "data.loader.image_size=32", *extra])
    shard_set = ShardSet.open(shards)
    lc = cfg.data.loader
    loader = build_loader(shard_set, "train", preprocess_for(shard_set.classes, lc.image_size, augment=False,
                                                             image_encoder="tiny"), lc,
                          rank=0, world_size=1, batch_size=8, mode="eval", seed=0)
    frozen = []
    schedule = SimpleNamespace(set_frozen=lambda names: frozen.append(list(names)))
    return PhaseController(cfg, model, schedule, loader, DistEnv(), tmp_path / "runs" / name), frozen, loader


def test_each_phase_freezes_its_groups_once_and_keeps_its_caches_on_disk(shards, tmp_path):
    """Entering phase 0 tells the schedule exactly the frozen groups (text encoder), caches the text features and
    writes them under `run.cache_dir`; another epoch of the same phase changes nothing (no second cache fill);
    entering it again by force (the reloaded best checkpoint) rebuilds the caches and finds them on disk; phase 1
    freezes nothing and caches nothing; phase 2 freezes both encoders and trains the heads from a feature table of
    the whole train split, whose features are the frozen encoders' own, in eval mode, for each key."""
    model = _model()
    ctl, frozen, loader = _controller(shards, tmp_path, model)
    assert ctl.enter(0) == 0
    assert frozen == [["text_encoder"]] and ctl.caches["image"] is None and ctl.table is None
    text_cache = ctl.caches["text"]
    assert ctl.cache_loads == {"hits": 0, "misses": 1}
    assert text_cache.path == tmp_path / "cache" / "features" / f"text-{text_cache.identity}.safetensors"
    assert text_cache.path.is_file()

    assert ctl.enter(1) == 0
    assert frozen == [["text_encoder"]] and ctl.caches["text"] is text_cache and ctl.cache_loads["misses"] == 1
    assert ctl.enter(1, force=True) == 0
    assert frozen == [["text_encoder"]] * 2 and ctl.caches["text"] is not text_cache
    assert ctl.cache_loads == {"hits": 1, "misses": 1}

    assert ctl.enter(2) == 1 and frozen[-1] == [] and ctl.caches == {"image": None, "text": None}
    assert ctl.enter(5) == 2 and frozen[-1] == ["image_encoder", "text_encoder"]
    table = ctl.table
    n_train = sum(len(b["key"]) for b in loader)
    assert table is not None and len(table) == n_train and table.keys == sorted(table.keys)
    assert model.training and model.head.training  # the cache fill (an eval pass) hands the model back training
    model.eval()
    with torch.no_grad():
        for batch in loader:
            idx = [table.index[k] for k in batch["key"]]
            assert table.labels[idx].tolist() == batch["label"].tolist()
            torch.testing.assert_close(table.image[idx], model.image_encoder(batch["image"]), atol=1e-5, rtol=1e-5)
            tokens = model.text_encoder.tokenize(batch["text"])
            torch.testing.assert_close(table.text[idx], model.text_encoder(**tokens), atol=1e-6, rtol=1e-6)


def test_augmented_images_are_never_cached(shards, tmp_path):
    """With `data.loader.augment` on, a frozen image encoder sees a new input every epoch: its features are not
    cached (the text encoder's are), so the heads keep training from the loader, not from a table."""
    ctl, frozen, _ = _controller(shards, tmp_path, _model(), ["data.loader.augment=true"])
    ctl.enter(4)
    assert frozen == [["image_encoder", "text_encoder"]]
    assert ctl.caches["image"] is None and ctl.caches["text"] is not None and ctl.table is None


def test_text_features_of_another_max_length_are_not_served_from_a_shared_cache(shards, tmp_path):
    """Two runs sharing `run.cache_dir` whose text encoders have the same weights but another `max_length` (a
    search over it) read different text: the second gets its own cache (a miss) holding its own features, not
    the first run's."""
    first, _, _ = _controller(shards, tmp_path, _model(max_length=12), name="long")
    first.enter(0)
    model = _model(max_length=3)
    second, _, loader = _controller(shards, tmp_path, model, name="short")
    second.enter(0)
    assert second.caches["text"].identity != first.caches["text"].identity
    assert second.cache_loads == {"hits": 0, "misses": 1}
    batch = next(iter(loader))
    with torch.no_grad():
        want = model.text_encoder(**model.text_encoder.tokenize(batch["text"]))
    torch.testing.assert_close(second.caches["text"].lookup(batch["key"]), want)


def test_image_features_at_another_image_size_get_their_own_cache(shards, tmp_path):
    """Runs sharing `run.cache_dir` at two image sizes each keep their own image table (the identity names the
    size), instead of the second finding the first's table and being refused for its recorded size."""
    first, _, _ = _controller(shards, tmp_path, _model(), [], name="s32")
    first.enter(4)
    second, _, _ = _controller(shards, tmp_path, _model(), ["data.loader.image_size=24"], name="s24")
    second.enter(4)
    assert second.caches["image"].identity != first.caches["image"].identity
    assert second.caches["image"].path.is_file() and first.caches["image"].path.is_file()
    assert second.cache_loads == {"hits": 1, "misses": 1}  # the text table is shared, the image table is not


def test_a_table_recorded_with_a_setting_it_no_longer_depends_on_still_loads(tmp_path):
    """A text table saved when its provenance also named the image size (older versions) loads for a run that
    records only the shard set (a resumed run keeps its cache), while another shard set is still refused."""
    from mmlnb_dist.core.provenance import ProvenanceError
    from mmlnb_dist.recipes.fusion.features import FeatureCache

    old = FeatureCache("text", "t1", tmp_path, provenance={"shards_manifest_sha256": "aaa", "image_size": 64})
    old.put(["k1", "k2"], torch.tensor([[1.0], [2.0]]))
    old.save()
    now = FeatureCache("text", "t1", tmp_path, provenance={"shards_manifest_sha256": "aaa"})
    assert now.load() and torch.equal(now.stacked(["k2", "k1"]), torch.tensor([[2.0], [1.0]]))
    with pytest.raises(ProvenanceError, match=r"shards_manifest_sha256: 'aaa' -> 'bbb'"):
        FeatureCache("text", "t1", tmp_path, provenance={"shards_manifest_sha256": "bbb"}).load()
    with pytest.raises(ProvenanceError, match=r"image_size: 64 -> 32"):
        FeatureCache("text", "t1", tmp_path, provenance={"shards_manifest_sha256": "aaa", "image_size": 32}).load()
