"""The follower process's frames (console/follower_process.py): what one end writes the
other reads back whole; a frame cut short, or a pipe closed under the reader, is the end
of the stream, not an error or a half frame."""

from __future__ import annotations

import io
import pickle

from console.follower_process import HEADER, _read_frame


def frame_bytes(frame: tuple) -> bytes:
    body = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


def test_frames_read_back_in_order_then_the_end():
    page = ("page", [("/calico/k", b"{}", 7, 3)], [None])
    stream = io.BytesIO(frame_bytes(page) + frame_bytes(("snapshot", 7)))
    assert _read_frame(stream) == page
    assert _read_frame(stream) == ("snapshot", 7)
    assert _read_frame(stream) is None


def test_a_frame_cut_short_is_the_end():
    whole = frame_bytes(("status", "in-sync", ""))
    assert _read_frame(io.BytesIO(whole[:2])) is None  # in the length
    assert _read_frame(io.BytesIO(whole[:-1])) is None  # in the body


def test_a_stream_closed_under_the_reader_is_the_end():
    stream = io.BytesIO(frame_bytes(("snapshot", 1)))
    stream.close()
    assert _read_frame(stream) is None
