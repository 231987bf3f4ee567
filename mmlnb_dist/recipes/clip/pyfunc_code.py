"""The CLIP classifier's MLflow "models from code" file: what `mlflow.pyfunc.load_model` runs to build the model.

The registry logs this file, not a pickled object, so loading a registered model executes reviewed package code
and unpickles nothing. The weights travel as the `export` artifact (safetensors + JSON), read in
`ClipClassifier.load_context`. The import is absolute: MLflow runs this file on its own, with the packaged
`mmlnb_dist` (the model's code path) on `sys.path`.
"""
import mlflow.models

from mmlnb_dist.recipes.clip.pyfunc_model import ClipClassifier

mlflow.models.set_model(ClipClassifier())
