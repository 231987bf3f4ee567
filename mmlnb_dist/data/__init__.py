"""Data: shard sets and everything that reads or writes them. Knows no model and no recipe.

    from mmlnb_dist.data.shardset import ShardSet, ShardError      # a shard set, opened once
    from mmlnb_dist.data.build import SampleSpec, build_shards     # patches -> shard set
    from mmlnb_dist.data.collect import collect_samples            # folder / CSV -> SampleSpecs
    from mmlnb_dist.data.verify import verify_shards
    from mmlnb_dist.data.loader import build_loader                # shard set -> batches (recipe-injected preprocess)
    from mmlnb_dist.data.preprocess import ImageSamplePreprocess, ClassIndexLabel, MultiHotLabel
    from mmlnb_dist.data.map import map_shard_set                  # shard set -> derived shard set, exactly once
    from mmlnb_dist.data.synthetic import make_synthetic_dataset   # the embedded synthetic H&E-like set

Submodules import heavy dependencies (torch, PIL, webdataset) themselves.
"""
