"""The one seeded-stream rule: every random draw that belongs to a thing (a volume's batch of
slices, a test slice's mask, a training pair's fill) comes from `stream(seed, key, index)`, a
function of the seed, the thing's stable key and its index only. So a volume's output does not
depend on the other inputs, their order, or how many workers or machines share the work, and
nothing reads a global random state."""

from __future__ import annotations

import hashlib

import numpy as np


def key_hash(key: str) -> int:
    """A stable 60-bit integer for a text key (sha256; the same on every platform and run)."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:15], 16)


def stream(seed: int, key: str, index: int = 0) -> np.random.Generator:
    """The random stream of item `index` of the thing called `key`, under `seed`."""
    return np.random.default_rng([int(seed), key_hash(key), int(index)])
