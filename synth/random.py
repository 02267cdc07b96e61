"""Counter-based random streams: every draw a pure function of (seed, scope, stream, index).

SplitMix64 over polars ``UInt64`` columns keeps generation vectorised without numpy, gives the same
rows and bytes on every run, and lets a later night re-create exactly the earlier stay it corrects
or voids without carrying any state between calls.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import polars as pl

_MASK64 = (1 << 64) - 1


def _u64(value: int) -> pl.Series:
    """A one-element UInt64 series: polars broadcasts it and multiplies modulo 2**64."""
    return pl.Series([value & _MASK64], dtype=pl.UInt64)


_GOLDEN = _u64(0x9E3779B97F4A7C15)
_MIX1 = _u64(0xBF58476D1CE4E5B9)
_MIX2 = _u64(0x94D049BB133111EB)
_POW2 = {k: _u64(1 << k) for k in (11, 27, 30, 31, 32)}


def _key(*parts: object) -> int:
    """A stable 64-bit key for a tuple of names (``hash()`` of a str is salted per process)."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little")


class _Rng:
    """Named random streams; a draw depends only on (seed, scope, stream, index)."""

    def __init__(self, seed: int, *scope: object) -> None:
        self._scope = (int(seed), *(str(part) for part in scope))
        self._key = _u64(_key(*self._scope))
        self._cached: tuple[pl.Series, pl.Series] | None = None

    def _base(self, index: pl.Series) -> pl.Series:
        """SplitMix64 of each index under this scope's key; kept for the last index series."""
        # Draws of many streams over the same rows share this full mix, so that each stream
        # only costs one cheap extra round: a third of the work at 10 M rows.
        if self._cached is not None and self._cached[0] is index:
            return self._cached[1]
        z = index.cast(pl.UInt64) * _GOLDEN + self._key
        z = (z ^ (z // _POW2[30])) * _MIX1
        z = (z ^ (z // _POW2[27])) * _MIX2
        z = z ^ (z // _POW2[31])
        self._cached = (index, z)
        return z

    def bits(self, stream: str, index: pl.Series) -> pl.Series:
        """64 well-mixed bits per index for the named stream."""
        z = (self._base(index) ^ _u64(_key(*self._scope, stream))) * _MIX1
        return (z ^ (z // _POW2[32])).alias(stream)

    def uniform(self, stream: str, index: pl.Series) -> pl.Series:
        """Floats in [0, 1) with 53 random bits."""
        return (self.bits(stream, index) // _POW2[11]).cast(pl.Float64) * (2.0**-53)

    def below(self, stream: str, index: pl.Series, n: int) -> pl.Series:
        """Integers in [0, n); the modulo bias is below 2**-40 for the small n used here."""
        return (self.bits(stream, index) % _u64(n)).cast(pl.Int64)

    def normal(self, stream: str, index: pl.Series) -> pl.Series:
        """Standard normal draws (Box-Muller)."""
        u1 = self.uniform(stream + "/r", index)
        u2 = self.uniform(stream + "/a", index)
        return (-2.0 * (1.0 - u1).log()).sqrt() * (2.0 * math.pi * u2).cos()

    def pick_index(
        self, stream: str, index: pl.Series, n: int, weights: Sequence[float] | None = None
    ) -> pl.Series:
        """Positions in [0, n) per index, with the given relative weights."""
        if weights is None:
            return self.below(stream, index, n)
        total = float(sum(weights))
        cumulative, acc = [], 0.0
        for w in weights:
            acc += w / total
            cumulative.append(acc)
        u = self.uniform(stream, index)
        return pl.Series(cumulative).search_sorted(u, side="right").clip(upper_bound=n - 1)

    def pick(
        self,
        stream: str,
        index: pl.Series,
        values: Sequence[Any],
        weights: Sequence[float] | None = None,
        dtype: pl.DataType | type[pl.DataType] | None = None,
    ) -> pl.Series:
        """One of ``values`` per index, with the given relative weights."""
        pool = pl.Series(stream, list(values), dtype=dtype)
        return pool.gather(self.pick_index(stream, index, len(pool), weights)).alias(stream)


def _days(expr: pl.Expr | int) -> pl.Expr:
    """A duration of whole days, for date arithmetic."""
    return pl.duration(days=expr)
