"""The CLIP recipe (seed 002): fine-tuned CLIP towers for multi-label classification of image-text pairs.

    config.py    the `clip:` section (towers, unfreezing, fusion, head, loss, top-k) and the metric names
    towers.py    the image and text towers of a transformers CLIPModel (tiny random or pretrained), tokenizer
    model.py     ClipMultiLabel: towers -> fusion (concat / sum / one tower) -> MLP head
    metrics.py   micro/macro AUROC, top-k F1/precision/recall, Hamming loss, j-of-k accuracy (gathered splits)
    recipe.py    ClipRecipe (check / setup / train / evaluate / save_checkpoint / cleanup)
    export.py    the end of a run: best checkpoint, final evaluation, safetensors + JSON export
"""
