"""A patches CSV that lists one image twice was refused as "duplicate key 'patches_UD_a_b'" (an internal name the
user never wrote); the message now says the image is listed twice, and with which labels."""
from __future__ import annotations

import pytest

from mmlnb_dist.data.collect import collect_samples
from mmlnb_dist.data.shardset import ShardError

from support.shards import CLASSES, write_patch_folder


@pytest.mark.parametrize("second", ["UD", "PD"])
def test_an_image_listed_twice_is_named_as_such(tmp_path, second):
    write_patch_folder(tmp_path / "p", per_class=1)
    (tmp_path / "list.csv").write_text(f"path,label\np/UD/UD_000.png,UD\np/UD/UD_000.png,{second}\n"
                                       "p/PD/PD_000.png,PD\n")
    with pytest.raises(ShardError, match=rf"p/UD/UD_000.png: listed twice \(labels UD and {second}\)"):
        collect_samples(tmp_path / "list.csv", CLASSES)
