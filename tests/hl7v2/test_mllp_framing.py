"""MLLP deframing: partial reads, several frames per read, garbage, oversized frames in bounded memory."""

from __future__ import annotations

import pytest

from bridge.plugins.hl7v2.mllp import FrameReader, Oversized, frame

from tests.hl7v2.conftest_mllp import adt


def feed_in_pieces(reader: FrameReader, data: bytes, size: int) -> list:
    out = []
    for i in range(0, len(data), size):
        out.extend(reader.feed(data[i:i + size]))
    return out


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 64, 100_000])
def test_frames_survive_any_split(piece):
    messages = [adt(f"C{i}") for i in range(3)]
    stream = b"".join(frame(m) for m in messages)
    assert feed_in_pieces(FrameReader(10_000), stream, piece) == messages


def test_garbage_outside_frames_is_skipped_and_counted():
    reader = FrameReader(10_000)
    out = reader.feed(b"\r\nnoise" + frame(b"MSH|one\r") + b"\n\n" + frame(b"MSH|two\r") + b"tail")
    assert out == [b"MSH|one\r", b"MSH|two\r"]
    assert reader.skipped == len(b"\r\nnoise") + 2 + len(b"tail")
    assert not reader.pending


def test_a_lone_end_byte_inside_a_message_does_not_end_it():
    body = b"MSH|a\x1cb\r"  # 0x1C not followed by 0x0D is content
    assert FrameReader(100).feed(frame(body)) == [body]


@pytest.mark.parametrize("piece", [1, 5, 99, 4096, 1_000_000])
def test_oversized_frame_is_dropped_up_to_its_end_and_the_next_frame_survives(piece):
    big = adt("BIG", filler=20_000)
    small = adt("SMALL")
    reader = FrameReader(1_000)
    peak = 0
    out = []
    stream = frame(big) + frame(small)
    for i in range(0, len(stream), piece):
        out.extend(reader.feed(stream[i:i + piece]))
        peak = max(peak, reader.buffered)
    assert len(out) == 2
    assert isinstance(out[0], Oversized) and out[0].size == len(big)
    assert out[0].head.startswith(b"MSH|^~\\&|SENDAPP|SENDFAC|")  # enough to answer with MSA-2
    assert out[1] == small
    assert peak <= 1_000 + piece + 4096 + 2, "the reader held more than the limit plus one read"


def test_a_stream_of_endless_bytes_is_never_buffered_whole():
    reader = FrameReader(10_000)
    reader.feed(b"\x0b")
    for _ in range(200):  # 12.8 MB without an end block
        assert reader.feed(b"z" * 65_536) == []
        assert reader.buffered < 10_000 + 65_536 + 4096 + 2
    out = reader.feed(b"\x1c\x0d")
    assert out == [Oversized(200 * 65_536, b"z" * 4096)]


def test_end_block_split_right_after_the_limit_is_still_found():
    limit = 50
    content = b"M" * (limit + 1)
    reader = FrameReader(limit)
    out = reader.feed(b"\x0b" + content + b"\x1c") + reader.feed(b"\x0d" + frame(b"MSH|ok\r"))
    assert out == [Oversized(limit + 1, content), b"MSH|ok\r"]
