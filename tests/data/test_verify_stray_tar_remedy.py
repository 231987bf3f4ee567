"""`shards verify` on a set whose folder holds a tar the manifest does not list: the only remedy printed was
"restore the shards named above", which does nothing for it (the stray tar is not a shard of the set). Its line now
carries its own remedy: move it out of the folder, or rebuild the set there."""
from __future__ import annotations

from mmlnb_dist.cli import main
from mmlnb_dist.data.verify import verify_shards

from support.shards import make_shard_set

STRAY = ("stray.tar: tar file not listed in the manifest; move it out of the shard folder (a shard of another set?) "
         "or rebuild the set")


def test_a_stray_tar_is_reported_with_its_own_remedy(tmp_path, capsys):
    shards = make_shard_set(tmp_path, per_class=2, max_per_shard=3, val_fraction=0.0)
    (shards / "stray.tar").write_bytes(b"\0" * 1024)
    assert verify_shards(shards, progress=False).problems == [STRAY]
    assert main(["shards", "verify", str(shards), "--no-progress"]) == 1
    assert f"  {STRAY}" in capsys.readouterr().out.splitlines()


def test_a_stray_tar_alone_does_not_close_with_restore_the_shards(tmp_path, capsys):
    """The closing line said "to repair: restore the shards named above ..." though no shard was named: a stray tar
    alone has its remedy on its own line; a damaged shard beside it still gets the closing line."""
    shards = make_shard_set(tmp_path, per_class=2, max_per_shard=3, val_fraction=0.0)
    (shards / "stray.tar").write_bytes(b"\0" * 1024)
    assert main(["shards", "verify", str(shards), "--no-progress"]) == 1
    assert "restore the shards named above" not in capsys.readouterr().out
    shard = sorted(shards.glob("train-*.tar"))[0]
    shard.write_bytes(shard.read_bytes()[:-10])
    assert main(["shards", "verify", str(shards), "--no-progress"]) == 1
    assert "restore the shards named above" in capsys.readouterr().out
