"""An autouse fixture for the VAE/latent/likelihood tests: their tiny models run on one torch thread (as fast as
two for models this small, and two threads spin badly when other processes hold a core)."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
