"""What ships to the device: the runtime selector and manifest reader (numpy/onnxruntime only)."""
