"""The caller's global random streams, for tests that check tunelab leaves them as they were.

A library call that draws from torch's, Python's or numpy's global stream changes what the
caller's own seeded code draws next. These helpers take the next draws from copies of the three
streams (so taking them changes nothing) and check that the streams still give them.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def next_draws() -> tuple[torch.Tensor, float, np.ndarray]:
    """The next draws of torch's, Python's and numpy's global streams, taken from copies of them."""
    torch_copy = torch.Generator()
    torch_copy.set_state(torch.get_rng_state())
    python_copy = random.Random()
    python_copy.setstate(random.getstate())
    numpy_copy = np.random.RandomState()
    numpy_copy.set_state(np.random.get_state())
    return torch.rand(3, generator=torch_copy), python_copy.random(), numpy_copy.random_sample(3)


def seed_all(seed: int) -> tuple[torch.Tensor, float, np.ndarray]:
    """Seed the three global streams; their next draws, taken from copies of them."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    return next_draws()


def assert_draws(expected: tuple[torch.Tensor, float, np.ndarray]) -> None:
    """The global streams give the draws `next_draws` took: nothing drew from them since."""
    torch_next, python_next, numpy_next = expected
    assert torch.equal(torch.rand(3), torch_next)
    assert random.random() == python_next
    assert np.array_equal(np.random.random_sample(3), numpy_next)
