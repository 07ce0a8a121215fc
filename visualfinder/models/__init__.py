"""The embedding models: open_clip loading, device and backend choice (torch, ONNX Runtime),
pretrained weights, and switching a library to another model."""
