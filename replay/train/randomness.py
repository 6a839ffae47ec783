"""Every random draw of an update derives from ``(seed, update index, purpose)``, never from torch's global RNG.

Update ``v`` (the rollout played by policy version ``v``, then the learning that makes version ``v + 1``) draws
its actions from :func:`update_generator` with :data:`ROLLOUT` and shuffles its minibatches with :data:`SHUFFLE`.
So replaying an update needs no recorded generator state: a rebuild of any version draws exactly what the trainer
drew, whatever happened before (a resume, an evaluation, another library drawing from the global RNG).
"""

from __future__ import annotations

import numpy as np
import torch

ROLLOUT = 0x5A4D  # the actions sampled in an update's rollout
SHUFFLE = 0x5F1E  # the minibatch order of an update's epochs


def update_generator(seed: int, update: int, purpose: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded from the run's ``seed``, the ``update`` index (the version that plays the rollout) and
    the ``purpose`` (:data:`ROLLOUT` or :data:`SHUFFLE`).

    Example:
        >>> a = update_generator(1, 7, ROLLOUT)
        >>> b = update_generator(1, 7, ROLLOUT)
        >>> torch.equal(torch.randperm(5, generator=a), torch.randperm(5, generator=b))
        True
    """
    low, high = np.random.SeedSequence([seed, update, purpose]).generate_state(2, dtype=np.uint32)
    generator = torch.Generator(device=device)
    generator.manual_seed(int(low) | int(high) << 32)
    return generator
