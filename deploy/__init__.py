"""Deployment: ONNX export (deploy/export.py) and the Raspberry Pi runtime (numpy + onnxruntime only)."""
