"""Shared test setup."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """As train_seed and the executor's workers do: one torch thread per process.

    Small env and SB3 ops stall on OpenMP workers when the machine is busy.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
