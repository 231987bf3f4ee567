"""A slide worker (a spawned pool process or a Ray task) imports what `process_slide` needs, and that is not torch:
importing torch costs every spawned worker seconds and hundreds of MB, once per slide after a worker crash."""
from __future__ import annotations

import subprocess
import sys


def test_tiling_and_collecting_inputs_do_not_import_torch():
    code = ("import sys, pickle; import mmlnb_dist.slides.slide_task, mmlnb_dist.slides.tiler, "
            "mmlnb_dist.slides.inputs, mmlnb_dist.data.collect; "
            "from mmlnb_dist.slides.slide_task import process_slide; pickle.dumps(process_slide); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout[:300]


def test_the_image_transform_still_gives_normalised_tensors():
    import numpy as np
    import torch
    from PIL import Image

    from mmlnb_dist.data.images import ImageTransform

    arr = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    t = ImageTransform(4, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))(Image.fromarray(arr))
    ref = (torch.from_numpy(arr).permute(2, 0, 1).float() / 255 - 0.5) / 0.25
    assert t.dtype == torch.float32 and torch.allclose(t, ref, atol=1e-6)
