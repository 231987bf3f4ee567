"""Data: the embedded synthetic set, WebDataset shard building/verification, and the streaming loader.

Submodules import heavy dependencies (torch, PIL) themselves; import what you need from them directly:

    from mmlnb_dist.data.shards import SampleSpec, build_shards, read_manifest, iter_shard_samples
    from mmlnb_dist.data.loader import build_loader, build_loader_from_config
    from mmlnb_dist.data.synthetic import make_synthetic_dataset, render_patch, describe_label
"""
