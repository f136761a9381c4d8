"""What runs on the Raspberry Pi: the runtime (numpy + onnxruntime only). The ONNX export is host-side (training/export.py)."""
