"""Seeds: of this process, derived for (seed, epoch, rank), or fresh."""
import random

import numpy as np
import torch


def seed_everything(seed):
    """Seed python, numpy and torch (this process)."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def derive_seed(*parts):
    """A well-mixed 32-bit seed that depends only on the integers in `parts`
    (e.g. base seed, epoch, rank)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def fresh_seed():
    """An unpredictable seed, for runs with SEED < 0."""
    return int(np.random.SeedSequence().generate_state(1)[0])
