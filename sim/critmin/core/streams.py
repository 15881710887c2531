"""Named random streams.

Every random activity draws from its own stream, keyed by a stable name and
the replication number, all derived from one root seed. A policy that adds
new random activities therefore leaves the draws of all others untouched:
policies are compared under common random numbers. No global RNG is used.
"""

from __future__ import annotations

import zlib

import numpy as np


def stream(root_seed: int, replication: int, name: str) -> np.random.Generator:
    """The generator for activity `name` in `replication` (stable across runs and platforms)."""
    key = zlib.crc32(name.encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence([root_seed, replication, key]))
