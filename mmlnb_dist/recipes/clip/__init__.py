"""The CLIP recipe (seed 002): fine-tuned CLIP towers for multi-label classification of image-text pairs.

    config.py    the `clip:` section (towers, unfreezing, fusion, head, loss, top-k) and the metric names
    towers.py    the image and text towers of a transformers CLIPModel (tiny random or pretrained), tokenizer
    openclip_towers.py  the same for an open_clip CLIP (QuiltNet via hf-hub:, open_clip built-ins, tiny-open_clip)
    branches.py  baselines by composition: a models.encoders image encoder (ResNet-50) or BERT text encoder
    model.py     ClipMultiLabel: towers / branches -> fusion (concat / sum / prmf / one side) -> MLP head, or
                 zero-shot CLIP (no head)
    metrics.py   micro/macro AUROC, top-k F1/precision/recall, Hamming loss, j-of-k accuracy (gathered splits)
    recipe.py    ClipRecipe (check / setup / train / evaluate / save_checkpoint / cleanup)
    export.py    the end of a run: best checkpoint, final evaluation, safetensors + JSON export
    plots.py     per-label F1 and label co-occurrence figures; `publish_run` (figures, registry) at the end
    pyfunc_model.py, pyfunc_code.py  the MLflow pyfunc (models from code) and the registry entry point
    evaluate.py  `mmlnb-dist evaluate` of an export on one split
"""
