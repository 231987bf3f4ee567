"""Pathology foundation models by name (issue 16, item 1): every registry entry builds through its real loader
(timm create_model, transformers, open_clip) in a tiny random form, applies the output rule and normalisation of
its model card, the full-size architectures give the card's embedding size and parameter count, local weights
and a pre-downloaded Hugging Face cache work offline, and a gated model that is missing says how to get it.

Oracles are the model cards (hard-coded below, independent of the registry) and the libraries' own outputs
(timm `forward_features`, torchvision `Normalize`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

pytest.importorskip("timm")
pytest.importorskip("open_clip")

from mmlnb_dist.models.config import ImageEncoderConfig
from mmlnb_dist.models.encoders import (
    IMAGE_ENCODERS, PATHOLOGY_MODELS, EncoderError, build_image_encoder, image_normalisation,
)

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
H_OPTIMUS = ((0.707223, 0.578729, 0.703617), (0.211883, 0.230117, 0.177517))
CARDS = {  # name: (embedding size, normalisation, licence, gated, parameters in millions) from the model cards
    "uni": (1024, IMAGENET, "CC-BY-NC-ND-4.0", True, 303),
    "uni2-h": (1536, IMAGENET, "CC-BY-NC-ND-4.0", True, 681),
    "virchow2": (2560, IMAGENET, "CC-BY-NC-ND-4.0", True, 632),
    "h-optimus-0": (1536, H_OPTIMUS, "Apache-2.0", True, 1135),
    "prov-gigapath": (1536, IMAGENET, "Apache-2.0", True, 1135),
    "phikon-v2": (1024, IMAGENET, None, False, 303),
    "quiltnet-b-32": (512, CLIP, "MIT", False, 88),
    "plip": (512, CLIP, None, False, 88),
}
ROOT = Path(__file__).resolve().parents[2]


def test_the_registry_holds_the_issue_s_models_under_their_hub_ids():
    hub_ids = {name: entry.hub_id for name, entry in PATHOLOGY_MODELS.items()}
    assert hub_ids == {
        "uni": "hf-hub:MahmoodLab/uni", "uni2-h": "hf-hub:MahmoodLab/UNI2-h", "virchow2": "hf-hub:paige-ai/Virchow2",
        "h-optimus-0": "hf-hub:bioptimus/H-optimus-0", "prov-gigapath": "hf_hub:prov-gigapath/prov-gigapath",
        "phikon-v2": "owkin/phikon-v2", "quiltnet-b-32": "hf-hub:wisdomik/QuiltNet-B-32", "plip": "vinid/plip",
    }
    for name, (dim, _norm, licence, gated, _params) in CARDS.items():
        entry = PATHOLOGY_MODELS[name]
        assert entry.embed_dim == dim and entry.gated == gated, name
        assert licence is None or entry.licence == licence, name
        assert entry.embed_dim == entry.output_dim(entry.width), name  # the output rule at full width
    assert not PATHOLOGY_MODELS["uni2-h"].commercial_use and PATHOLOGY_MODELS["h-optimus-0"].commercial_use
    from mmlnb_dist.models.encoders import TEXT_ENCODER_ALIASES

    biomedbert = "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract-fulltext"
    assert TEXT_ENCODER_ALIASES == {"pubmedbert": biomedbert, "biomedbert": biomedbert,
                                    "bioclinicalbert": "emilyalsentzer/Bio_ClinicalBERT",
                                    "biobert": "dmis-lab/biobert-v1.1"}


def _tiny(name: str):
    return build_image_encoder(ImageEncoderConfig(name=f"{name}-tiny", pretrained=False)).eval()


def _reference_output(name: str, encoder, x: torch.Tensor) -> torch.Tensor:
    """The card's output rule computed from the library's own outputs (not the encoder's forward)."""
    body = encoder.body
    if name == "virchow2":  # card: class token + mean of patch tokens; tokens 1-4 are registers
        tokens = body.forward_features(x)
        return torch.cat([tokens[:, 0], tokens[:, 5:].mean(1)], dim=-1)
    if encoder.loader == "timm":  # card: model(x) with num_classes=0 = the (normed) class token
        return body.forward_features(x)[:, 0]
    if name == "phikon-v2":  # card: outputs.last_hidden_state[:, 0, :]
        return body(pixel_values=x).pooler_output  # Dinov2's pooler is the normed class token
    if name == "plip":  # CLIPModel.get_image_features: visual projection of the pooled vision output
        return body["visual_projection"](body["vision_model"](pixel_values=x)[1])
    return body(x)  # open_clip: encode_image = visual tower with its projection


@pytest.mark.parametrize("name", sorted(CARDS))
def test_every_entry_builds_tiny_and_applies_its_output_rule_and_normalisation(name):
    from torchvision.transforms import Normalize

    entry = PATHOLOGY_MODELS[name]
    encoder = _tiny(name)
    torch.manual_seed(0)
    images = torch.rand(2, 3, entry.input_size, entry.input_size)
    x = encoder.normalize(images)
    mean, std = CARDS[name][1]
    assert torch.allclose(x, Normalize(mean, std)(images), atol=1e-6)
    assert image_normalisation(name) == {"mean": list(mean), "std": list(std), "input_size": 224}
    with torch.no_grad():
        out = encoder(x)
        reference = _reference_output(name, encoder, x)
    # tiny dims scaled: the rule, e.g. Virchow2's 2 x width, a CLIP tower's projection (not its width)
    width = {"timm": 48, "transformers": 64, "open_clip": 64, "transformers-clip": 64}[entry.loader]
    expected = {"virchow2": 2 * width, "quiltnet-b-32": 32, "plip": 32}.get(name, width)
    assert encoder.out_dim == expected and out.shape == (2, expected)
    assert torch.allclose(out, reference, atol=1e-5)
    assert encoder.licence == entry.licence and encoder.source == entry.hub_id


def test_timm_entries_get_the_kwargs_of_their_cards():
    from timm.layers import GluMlp

    uni2 = _tiny("uni2-h").body
    assert uni2.patch_embed.patch_size == (14, 14) and uni2.num_reg_tokens == 8 and uni2.no_embed_class
    assert uni2.pos_embed.shape[1] == (224 // 14) ** 2  # no_embed_class: no position for prefix tokens
    assert isinstance(uni2.blocks[0].mlp, GluMlp) and isinstance(uni2.blocks[0].mlp.act, torch.nn.SiLU)
    assert uni2.dynamic_img_size and uni2.blocks[0].ls1.gamma.flatten()[0].item() == pytest.approx(1e-5)
    virchow = _tiny("virchow2").body
    assert virchow.num_prefix_tokens == 5 and isinstance(virchow.blocks[0].mlp, GluMlp)
    h_optimus = _tiny("h-optimus-0").body
    assert h_optimus.num_reg_tokens == 4 and not h_optimus.dynamic_img_size
    assert _tiny("uni").body.dynamic_img_size and _tiny("uni").body.patch_embed.patch_size == (16, 16)


@pytest.mark.parametrize("name", sorted(CARDS))
def test_full_size_architecture_has_the_card_s_embedding_size_and_parameter_count(name):
    """Built on the meta device (no memory, no weights); open_clip moves models to a device, so CPU for it."""
    dim, _norm, _licence, _gated, millions = CARDS[name]
    device = "cpu" if PATHOLOGY_MODELS[name].loader == "open_clip" else "meta"
    with torch.device(device):
        encoder = IMAGE_ENCODERS[name](False)
        out = encoder(torch.zeros(1, 3, 224, 224))
    assert encoder.out_dim == dim and out.shape == (1, dim)
    params = sum(p.numel() for p in encoder.parameters()) / 1e6
    assert params == pytest.approx(millions, rel=0.01)


def test_a_local_weights_file_loads_offline_and_is_fingerprinted(tmp_path):
    from safetensors.torch import save_file

    source = _tiny("uni")
    save_file({k: v.contiguous() for k, v in source.body.state_dict().items()}, str(tmp_path / "uni.safetensors"))
    loaded = build_image_encoder(ImageEncoderConfig(name="uni-tiny", pretrained=False,
                                                    weights_path=str(tmp_path / "uni.safetensors"))).eval()
    x = torch.randn(1, 3, 224, 224)
    assert torch.equal(loaded(x), source(x))
    assert loaded.weights_digest and _tiny("uni").weights_digest is None
    save_file({"cls_token": torch.zeros(1, 1, 48)}, str(tmp_path / "partial.safetensors"))
    with pytest.raises(EncoderError, match="lacks .* weights of 'uni-tiny'"):
        build_image_encoder(ImageEncoderConfig(name="uni-tiny", pretrained=False,
                                               weights_path=str(tmp_path / "partial.safetensors")))


@pytest.mark.parametrize("name", ["phikon-v2", "plip", "quiltnet-b-32", "virchow2"])
def test_a_downloaded_model_folder_loads_offline(name, tmp_path):
    """weights_path = the model folder as the Hub holds it: transformers folders through from_pretrained, an
    open_clip checkpoint (whole CLIP model: its `visual.` part is kept), a timm folder's model.safetensors."""
    from safetensors.torch import save_file

    source = _tiny(name)
    folder = tmp_path / name
    loader = PATHOLOGY_MODELS[name].loader
    if loader == "transformers":
        source.body.save_pretrained(str(folder))
    elif loader == "transformers-clip":
        from transformers import CLIPConfig, CLIPModel

        vision = source.body["vision_model"].config.to_dict()
        full = CLIPModel(CLIPConfig(vision_config=vision, projection_dim=source.out_dim, text_config={
            "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}))
        full.vision_model.load_state_dict(source.body["vision_model"].state_dict())
        full.visual_projection.load_state_dict(source.body["visual_projection"].state_dict())
        full.save_pretrained(str(folder))
    else:
        prefix = "visual." if loader == "open_clip" else ""
        folder.mkdir()
        file = "open_clip_model.safetensors" if loader == "open_clip" else "model.safetensors"
        save_file({prefix + k: v.contiguous() for k, v in source.body.state_dict().items()}, str(folder / file))
    loaded = build_image_encoder(ImageEncoderConfig(name=f"{name}-tiny", pretrained=False,
                                                    weights_path=str(folder))).eval()
    x = source.normalize(torch.rand(1, 3, 224, 224))
    with torch.no_grad():
        assert torch.allclose(loaded(x), source(x), atol=1e-6)


OFFLINE_SCRIPT = textwrap.dedent("""
    import json, sys, torch
    from mmlnb_dist.models.config import ImageEncoderConfig, TextEncoderConfig
    from mmlnb_dist.models.encoders import EncoderError, build_image_encoder, build_text_encoder
    result = {}
    try:
        build_image_encoder(ImageEncoderConfig(name="uni2-h"))
    except EncoderError as err:
        result["gated"] = str(err)
    uni = build_image_encoder(ImageEncoderConfig(name="uni")).eval()
    from safetensors.torch import load_file
    expected = load_file(sys.argv[1])
    result["uni_weights_equal"] = all(torch.equal(uni.body.state_dict()[k], v) for k, v in expected.items())
    result["uni_out_dim"] = uni.out_dim
    try:
        build_text_encoder(TextEncoderConfig(name="bioclinicalbert", pooling="cls"))
    except EncoderError as err:
        result["text_missing"] = str(err)
    text = build_text_encoder(TextEncoderConfig(name="biobert", pooling="cls"))
    result["biobert_out_dim"] = text.out_dim
    print("RESULT " + json.dumps(result))
""")


def _fake_hub_cache(hub: Path, repo_id: str) -> Path:
    """A Hugging Face cache holding one repository, laid out as huggingface_hub writes it."""
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    return snapshot


def test_offline_cache_loads_and_a_missing_gated_model_says_how_to_get_it(tmp_path):
    """HF_HUB_OFFLINE=1 with HF_HOME in tmp: the cache holds a (tiny) UNI and BioBERT, not UNI2-h or
    Bio_ClinicalBERT. A fresh process, since huggingface_hub reads HF_HOME when imported."""
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, BertConfig, BertModel

    from mmlnb_dist.models.encoders import minilm_dir

    hub = tmp_path / "hf" / "hub"
    uni = _fake_hub_cache(hub, "MahmoodLab/uni")
    (uni / "config.json").write_text(json.dumps({
        "architecture": "vit_large_patch16_224", "num_classes": 0,
        "model_args": {"embed_dim": 48, "depth": 2, "num_heads": 4, "img_size": 224, "patch_size": 16},
        "pretrained_cfg": {"input_size": [3, 224, 224], "mean": IMAGENET[0], "std": IMAGENET[1]}}))
    state = {k: v.contiguous() for k, v in _tiny("uni").body.state_dict().items()}
    save_file(state, str(uni / "model.safetensors"))
    biobert = _fake_hub_cache(hub, "dmis-lab/biobert-v1.1")
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
              ).save_pretrained(str(biobert))
    AutoTokenizer.from_pretrained(str(minilm_dir())).save_pretrained(str(biobert))
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    env.pop("HF_TOKEN", None)
    proc = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT, str(uni / "model.safetensors")], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    gated = result["gated"]
    for needed in ("uni2-h", "https://huggingface.co/MahmoodLab/UNI2-h", "request access", "huggingface-cli login",
                   str(hub), "HF_HUB_OFFLINE=1", "model.image_encoder.weights_path"):
        assert needed in gated, (needed, gated)
    assert result["uni_weights_equal"] and result["uni_out_dim"] == 48
    assert "emilyalsentzer/Bio_ClinicalBERT" in result["text_missing"] and str(hub) in result["text_missing"]
    assert result["biobert_out_dim"] == 32
