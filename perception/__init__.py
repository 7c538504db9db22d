"""Camera perception for cars and robots: nodes over ZeroMQ, a hybrid CNN-stem ViT for
detection and metric depth, 3D tracking, recording and replay."""

import os

# OpenMP threads that spin while waiting starve every other process on a small shared CPU
# (measured: nano 0.7 frames/s spinning vs 16 frames/s sleeping on the 2-core VM under load).
# libgomp reads this once, when torch loads: set here, before anything can import torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
