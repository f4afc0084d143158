"""Compress a run: merge adapters, export to ONNX, quantise to int8, prune; every export is parity-checked."""
