"""The model directory (an MLflow pyfunc model), its MLflow entry point, tracking and the registry."""
