"""Seeded 64-bit hashing of integer arrays (splitmix64 finaliser), vectorised in numpy.

Used for the random-hash baseline (item id -> row) and for fitting long n-grams/prefixes into a row
budget. uint64 arithmetic wraps, which is what the mixer relies on.
"""
from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def mix64(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.uint64)
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def seeded_hash(values: np.ndarray, seed: int) -> np.ndarray:
    """uint64 hash of int64 ``values``; different seeds give independent hash functions."""
    v = np.asarray(values, dtype=np.int64).view(np.uint64)
    offset = np.uint64((0x9E3779B97F4A7C15 * (2 * int(seed) + 1)) & 0xFFFFFFFFFFFFFFFF)  # python ints: no overflow
    return mix64(v + offset)


def hash_to_rows(values: np.ndarray, seed: int, rows: int) -> np.ndarray:
    """int64 row in [0, rows) for each value."""
    return (seeded_hash(values, seed) % np.uint64(rows)).astype(np.int64)


def chain_hash(state: np.ndarray, symbol: np.ndarray) -> np.ndarray:
    """Extend a running uint64 hash of a sequence by one symbol (prefix hashing, any length)."""
    return mix64(state * _GOLDEN + np.asarray(symbol, dtype=np.int64).view(np.uint64) + np.uint64(1))
