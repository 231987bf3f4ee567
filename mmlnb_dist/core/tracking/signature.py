"""The input schema a registered pyfunc model declares (any recipe)."""
from __future__ import annotations

from typing import Any, Dict, Sequence


def signature_requiring(example: Any, output: Any, params: Dict[str, Any], required: Sequence[str] = ("image",)):
    """MLflow's signature inferred from `example` -> `output` (with `params`), with only the `required` input
    columns required. The example has every column (an image, a description, a key, a slide id), so the inferred
    schema required them all and the documented `predict(pd.DataFrame({'image': [...]}))` of an image-only call was
    refused; the model itself refuses a row that lacks what it reads, saying so."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema

    inferred = infer_signature(example, output, params=params)
    inputs = Schema([ColSpec(c.type, c.name, required=c.name in required) for c in inferred.inputs.inputs])
    return ModelSignature(inputs=inputs, outputs=inferred.outputs, params=inferred.params)
