"""The line meter: a line in progress is measured as its bytes arrive, piece by piece."""

from __future__ import annotations

from servicepool_proxy.http.linemeter import LineMeter, Section


def fed(meter: LineMeter, *pieces: bytes):
    """Measure after each piece, as the front does; the first rejection, if any."""
    for piece in pieces:
        rejected = meter.measure(piece, 0, len(piece))
        if rejected is not None:
            return rejected
    return None


def test_an_endless_header_line_is_refused_once_it_passes_the_bound() -> None:
    meter = LineMeter(line_bytes=100, section_bytes=1000)
    meter.begin(Section.HEAD)
    assert fed(meter, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ", b"a" * 60) is None
    rejected = fed(meter, b"a" * 60)
    assert rejected is not None and rejected.status == 431


def test_complete_lines_reset_the_line_in_progress() -> None:
    meter = LineMeter(line_bytes=100, section_bytes=10_000)
    meter.begin(Section.HEAD)
    assert fed(meter, *[b"X-A: " + b"a" * 80 + b"\r\n"] * 20) is None
    assert meter.partial == 0


def test_the_whole_section_is_bounded_too() -> None:
    meter = LineMeter(line_bytes=100, section_bytes=250)
    meter.begin(Section.HEAD)
    assert meter.add_line(90) is None and meter.add_line(90) is None
    rejected = fed(meter, b"X-C: " + b"c" * 80)
    assert rejected is not None and rejected.status == 431
    assert "request head too large" in str(rejected)


def test_a_head_after_a_body_in_the_same_piece_is_not_charged_for_the_body() -> None:
    meter = LineMeter(line_bytes=100, section_bytes=1000)
    piece = b"x" * 500 + b"GET / HTTP/1.1"  # a Content-Length body, then a pipelined head
    meter.begin(Section.HEAD, after_line_feed=False)
    assert meter.measure(piece, 0, len(piece)) is None
    assert fed(meter, b"\r\nHost: x\r\n") is None


def test_a_runaway_chunk_size_line_gets_400_and_trailers_431() -> None:
    meter = LineMeter(line_bytes=100, section_bytes=1000)
    meter.begin(Section.CHUNK_SIZE)
    rejected = fed(meter, b"5;ext=" + b"e" * 200)
    assert rejected is not None and rejected.status == 400
    meter.begin(Section.AFTER_CHUNK_HEADER)
    assert not meter.in_trailers
    rejected = fed(meter, b"X-T: " + b"t" * 200)
    assert meter.in_trailers and rejected is not None and rejected.status == 431


def test_body_bytes_are_not_measured() -> None:
    meter = LineMeter(line_bytes=100, section_bytes=1000)
    meter.begin(Section.HEAD)
    meter.end()
    assert fed(meter, b"b" * 10_000) is None and meter.partial == 0
