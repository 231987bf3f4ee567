"""The fusion recipe (MMLNB stage 2): the dual-branch classifier (image encoder + text encoder, fused by the
PRMF confidence block, trained with a curriculum and staged freezing).

    config.py      the `fusion:` section (model, curriculum, caching) and the metric names
    model.py       FusionClassifier (its PRMF block and ablations: models/fusion_blocks.py, shared)
    curriculum.py  lambda(e), the phases and the curriculum loss
    features.py    the frozen-feature cache; phases.py what entering a phase changes
    steps.py       preprocess, batch -> inputs, the evaluation pass; metrics.py, plots.py
    recipe.py      FusionRecipe (setup / train / evaluate / save_checkpoint / cleanup); finish.py the end of a run
    export.py      the inference export; evaluate.py evaluation without a training engine
    pyfunc_model.py  the MLflow pyfunc wrapper and the registry package
"""
