"""The MLflow files that make a model directory an MLflow pyfunc model (``MLmodel``, signature, input
example, requirements). MLflow loads such a directory through :mod:`ml.pyfunc`."""

from __future__ import annotations

import pandas as pd

from ml.serving.tracking import quiet_mlflow_env


def signature_and_example(model, frame: pd.DataFrame):
    """A permissive input signature (column names and required-ness; types are checked by our own
    schema, which reports drift better) plus typed outputs, and a small input example."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    card = model.card
    inputs = [ColSpec(AnyType(), card.id_column)]
    if card.date_column:
        inputs.append(ColSpec(AnyType(), card.date_column, required=False))
    for f in model.schema_.features:
        if f.kind == "categorical":
            inputs.append(ColSpec("string", f.column, required=False))
        else:
            inputs.append(ColSpec(AnyType(), f.column, required=False))
    if card.value_column:
        inputs.append(ColSpec(AnyType(), card.value_column, required=False))
    outputs = [ColSpec(AnyType(), card.id_column)]
    if card.date_column:
        outputs.append(ColSpec("string", card.date_column, required=False))
    outputs += [
        ColSpec("double", "health_score"),
        ColSpec("string", "band"),
        ColSpec("double", "churn_probability"),
        ColSpec("double", "manual_score", required=False),
        ColSpec("string", "manual_band", required=False),
        ColSpec("double", "manual_churn_probability", required=False),
    ]
    if card.value_column:
        outputs += [ColSpec("double", "value", required=False), ColSpec("double", "value_at_risk", required=False)]
    outputs += [ColSpec("string", f"driver_{i}", required=False) for i in (1, 2, 3)]
    cols = [card.id_column] + ([card.date_column] if card.date_column else []) + model.schema_.columns
    cols += [card.value_column] if card.value_column and card.value_column in frame else []
    example = frame[cols].head(3).copy()
    if card.date_column:
        example[card.date_column] = pd.to_datetime(example[card.date_column]).dt.strftime("%Y-%m-%d")
    for f in model.schema_.features:
        if f.kind == "categorical":
            example[f.column] = example[f.column].astype(object).where(example[f.column].notna(), None).astype(object)
            example[f.column] = example[f.column].map(lambda v: None if v is None else str(v))
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs)), example


def write_mlflow_files(model, frame: pd.DataFrame, directory) -> None:
    """Make ``directory`` (empty) an MLflow pyfunc model; our own files are written after."""
    import logging

    quiet_mlflow_env()
    import lightgbm
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.ERROR)  # no INFO lines from saving the model

    signature, example = signature_and_example(model, frame)
    mlflow.pyfunc.save_model(
        str(directory),
        loader_module="ml.pyfunc",
        signature=signature,
        input_example=example,
        pip_requirements=[
            f"mlflow=={mlflow.__version__}",
            f"lightgbm=={lightgbm.__version__}",
            f"pandas=={pd.__version__}",
            "healthscore",
        ],
    )
