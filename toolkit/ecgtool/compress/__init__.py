"""Compress stage: structured pruning (Torch-Pruning), INT8 calibration sets and quantisation (ONNX Runtime)."""
