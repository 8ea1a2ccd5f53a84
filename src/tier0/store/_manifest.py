"""A version's manifest: its chunks in order, packed into one metadata column.

Each entry is the chunk's BLAKE3 hash (32 bytes) and its raw length (u32,
little-endian): 36 bytes per chunk, so a 5 GiB object of 1 MiB chunks needs a
184 KiB column. Offsets are the running sum of lengths, recomputed on read.
"""

from __future__ import annotations

import bisect
import itertools
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

ENTRY: Final = struct.Struct("<32sI")


@dataclass(frozen=True, slots=True)
class Manifest:
    hashes: tuple[bytes, ...]
    lengths: tuple[int, ...]

    @classmethod
    def decode(cls, blob: bytes) -> Manifest:
        assert len(blob) % ENTRY.size == 0, "a manifest is a whole number of entries"
        pairs = list(ENTRY.iter_unpack(blob))
        return cls(tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))

    @classmethod
    def of(cls, entries: Sequence[tuple[bytes, int]]) -> Manifest:
        return cls(tuple(e[0] for e in entries), tuple(e[1] for e in entries))

    def encode(self) -> bytes:
        return b"".join(ENTRY.pack(h, n) for h, n in zip(self.hashes, self.lengths, strict=True))

    @property
    def size(self) -> int:
        return sum(self.lengths)

    def spans(self, offset: int, length: int) -> Iterator[tuple[bytes, int, int]]:
        """The chunks covering ``[offset, offset + length)``: (hash, start, stop) within each chunk."""
        if length <= 0:
            return
        starts = list(itertools.accumulate(self.lengths, initial=0))
        index = bisect.bisect_right(starts, offset) - 1
        end = offset + length
        while index < len(self.hashes) and starts[index] < end:
            chunk_start = starts[index]
            yield (
                self.hashes[index],
                max(offset - chunk_start, 0),
                min(end - chunk_start, self.lengths[index]),
            )
            index += 1
