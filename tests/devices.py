"""The accelerators a test can run on: each a pytest parameter, skipped where it is absent."""
import pytest
import torch

CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here"))
MPS = pytest.param("mps", marks=pytest.mark.skipif(not torch.backends.mps.is_available(), reason="no MPS here"))
ACCELERATORS = [CUDA, MPS]
