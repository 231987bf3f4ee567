"""Local folders standing in for the rtx4090 profile's hub models, with random weights, for timing the pipeline on
a machine that cannot download them (the lent GPU machine has no internet; speed and memory do not depend on the
weights' values).

    python3 benchmarks/gpu_machine/full_size_models.py --out /tmp/models            # full size, on the GPU if any
    python3 benchmarks/gpu_machine/full_size_models.py --out /tmp/models --shrink   # the same layout, small (CPU)

Writes, in the `save_pretrained` layout the recipes load from a local path:
- `<out>/qwen2.5-vl-7b`: Qwen2.5-VL-7B-Instruct's architecture (`gpu_suite.vlm.qwen25_vl_7b_config`), bf16, and the
  recipe's tiny tokenizer and processor (its special tokens are Qwen's; the vocabulary is not), made to write
  descriptions of the full `max_new_tokens` in words the tokenizer knows;
- `<out>/bert-base-uncased`: BERT-base (`BertConfig()`), with the uncased BERT vocabulary MiniLM ships.
Then prints the overrides that point the rtx4090 profile at them (one per line), also in `<out>/overrides.txt`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

# Head dimension 128 as in the 7B (M-RoPE's sections add up to half of it), everything else small.
SHRUNK_QWEN = dict(vocab=152064, hidden=256, intermediate=512, layers=2, heads=2, kv_heads=1, vision_depth=2,
                   vision_hidden=128, vision_intermediate=256, vision_out=256)
SHRUNK_BERT = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)


def write_qwen(out: Path, shrink: bool, device: str) -> Path:
    import torch
    from gpu_suite.vlm import qwen25_vl_7b_config, random_qwen25_vl

    from mmlnb_dist.recipes.vlm.memory import QwenVLDims
    from mmlnb_dist.recipes.vlm.tiny_qwen import build_tiny_processor, build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    side = 256 * 256  # the rtx4090 profile's bounds; the recipe sets its own when it loads the processor
    proc = build_tiny_processor(tok, min_pixels=side, max_pixels=side)
    config = qwen25_vl_7b_config(tok, QwenVLDims(**SHRUNK_QWEN) if shrink else None)
    torch.manual_seed(0)
    model = random_qwen25_vl(config, tok, device)  # 16 GB of weights: seconds on a GPU, minutes on a CPU
    with torch.no_grad():
        # The tokenizer knows ~1,100 of the 152,064 ids: every other output row (and the special tokens') gets a
        # zero logit, below the maximum of the known ones, so generation writes decodable text of full length (an
        # end token would cut it short) and the classifier's text branch reads descriptions of realistic length.
        # Same shapes, same compute.
        model.lm_head.weight[len(tok):] = 0
        model.lm_head.weight[tok.all_special_ids] = 0
    folder = out / "qwen2.5-vl-7b"
    model.save_pretrained(folder)
    proc.save_pretrained(folder)
    return folder


def write_bert(out: Path, shrink: bool) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from mmlnb_dist.models.encoders import minilm_dir

    torch.manual_seed(0)
    folder = out / "bert-base-uncased"
    BertModel(BertConfig(**(SHRUNK_BERT if shrink else {}))).save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(minilm_dir())).save_pretrained(folder)
    return folder


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder to write the two model folders into")
    ap.add_argument("--shrink", action="store_true", help="small models of the same layout (a CPU check)")
    ap.add_argument("--device", default=None, help="where to initialise the 7B (default: cuda if available)")
    args = ap.parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    qwen, bert = write_qwen(args.out, args.shrink, device), write_bert(args.out, args.shrink)
    overrides = [f"vlm.model={qwen}", f"fusion.model.text_encoder.name={bert}",
                 "fusion.model.image_encoder.pretrained=false"]  # VGG16's ImageNet weights: a download
    (args.out / "overrides.txt").write_text("\n".join(overrides) + "\n")
    print("\n".join(overrides))
    return 0


if __name__ == "__main__":
    sys.exit(main())
