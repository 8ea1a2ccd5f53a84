"""Hashing small buffers in pieces that keep the GIL, with the digests unchanged."""

from __future__ import annotations

import hashlib
import os

import blake3
import pytest

from tier0.store._checksums import ALGORITHMS
from tier0.store._hashing import HOLD_GIL_BYTES_MAX, blake3_digest, update

SIZES = [0, 1, 2047, 2048, 4096, 5 * 1024 + 1, 65_535, HOLD_GIL_BYTES_MAX, HOLD_GIL_BYTES_MAX + 1]


class Recorder:
    def __init__(self) -> None:
        self.pieces: list[int] = []

    def update(self, data: bytes | memoryview, /) -> None:
        self.pieces.append(len(data))


@pytest.mark.parametrize("size", SIZES)
def test_every_algorithm_digests_the_same_fed_in_pieces(size: int) -> None:
    data = os.urandom(size)
    for name, new in ALGORITHMS.items():
        whole, pieces = new(), new()
        whole.update(data)
        update(pieces, data)
        assert pieces.digest() == whole.digest(), name
    assert blake3_digest(data) == blake3.blake3(data).digest()
    assert blake3_digest(memoryview(data)) == blake3.blake3(data).digest()


def test_small_buffers_go_in_pieces_below_the_gil_release_threshold() -> None:
    # hashlib and blake3 release the GIL from 2,048 bytes, zlib's CRC-32 from 5 KiB.
    for size in (2048, 4096, HOLD_GIL_BYTES_MAX):
        recorder = Recorder()
        update(recorder, os.urandom(size))
        assert sum(recorder.pieces) == size
        assert max(recorder.pieces) < 2048


def test_large_buffers_go_whole() -> None:
    recorder = Recorder()
    update(recorder, bytes(HOLD_GIL_BYTES_MAX + 1))
    assert recorder.pieces == [HOLD_GIL_BYTES_MAX + 1]


def test_md5_of_a_small_body_is_unchanged() -> None:
    data = os.urandom(4096)
    hasher = hashlib.md5()
    update(hasher, data)
    assert hasher.hexdigest() == hashlib.md5(data).hexdigest()
