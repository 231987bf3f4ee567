"""`--image-size` refused for an encoder that takes other sizes than its own (uni2-h: any multiple of its 14 px
patch) must not tell the user it takes only its own size: 42 px works, 40 px does not."""
from __future__ import annotations

import pytest


def test_a_refused_size_is_not_reported_as_only_the_encoders_own_size():
    from mmlnb_dist.core.errors import UserError
    from mmlnb_dist.features.extract import check_image_size
    from mmlnb_dist.models.config import ImageEncoderConfig
    from mmlnb_dist.models.encoders import build_image_encoder

    encoder = build_image_encoder(ImageEncoderConfig(name="uni2-h-tiny", pretrained=False)).eval()
    check_image_size(encoder, 42)  # a multiple of the patch size: taken
    with pytest.raises(UserError) as refused:
        check_image_size(encoder, 40)
    message = str(refused.value)
    assert "cannot take 40 x 40 px images" in message
    assert "divisible by patch size" in message  # the library's reason
    assert "takes 224 x 224" not in message
    assert "leave --image-size out to use its own 224" in message
