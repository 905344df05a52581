"""The intent classifier: ONNX Runtime inference, training, evaluation and the model artefacts.

Imports no project code (neither ``listener`` nor ``agents``).
"""
