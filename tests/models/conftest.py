"""Fixtures for the network tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run each test on one torch thread.

    The test machine's two cores are shared with other jobs; two OpenMP threads that spin in
    barriers while the other core is busy made the training-step test 10x slower (78 s vs 7 s).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
