"""NVML behind a small protocol: the real library (nvidia-ml-py) and a fake fed from recorded readings."""
