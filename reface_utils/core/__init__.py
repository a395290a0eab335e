"""Infrastructure: where files live, reading images, the feature cache, checkpoints, the
runtime (devices, onnxruntime), progress bars, video I/O. Imports nothing else of ReFace.
"""
