"""`shards verify` that finds problems ends with what to do about them (restore or rebuild), not only the list;
a clean set prints no such line."""
from __future__ import annotations

from mmlnb_dist.cli import main

from support.shards import make_shard_set


def test_verify_with_problems_ends_with_the_remedy_and_a_clean_set_without(tmp_path, capsys):
    shards = make_shard_set(tmp_path, per_class=2, max_per_shard=3, val_fraction=0.0)
    assert main(["shards", "verify", str(shards), "--no-progress"]) == 0
    assert "to repair" not in capsys.readouterr().out
    data = bytearray((shards / "train-000001.tar").read_bytes())
    data[len(data) // 3] ^= 0x01
    (shards / "train-000001.tar").write_bytes(bytes(data))
    assert main(["shards", "verify", str(shards), "--no-progress"]) == 1
    out = capsys.readouterr().out.rstrip().splitlines()
    assert "  train-000001.tar: sha256 differs from the manifest" in out
    assert out[-1].startswith("to repair: restore the shards named above") and "mmlnb-dist shards build" in out[-1]
