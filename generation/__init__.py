"""The engine and the worker. Importing this package (and `spec`, `samplers`, `parameters`) is
torch-free; only `engine`, `loader`, `tiny` and `worker` import torch and diffusers."""
