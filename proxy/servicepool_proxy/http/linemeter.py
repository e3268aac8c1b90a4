"""Bounds on the line-oriented parts of a request as its bytes arrive: the head, each
chunk-size line and the trailer section.

The parser keeps a partial line until it ends, so an endless line would grow without bound;
the meter measures the line being received after every piece the parser is fed, and the
section's complete lines as the parser reports them.
"""

from __future__ import annotations

from enum import IntEnum

from servicepool_proxy.http.exchange import RequestRejected


class Section(IntEnum):
    """Where the parser is, as far as lines are concerned."""

    BODY = 0  # no line is being received: between requests or inside body data
    HEAD = 1  # request line and header fields
    CHUNK_SIZE = 2  # the size line of the next chunk
    AFTER_CHUNK_HEADER = 3  # chunk data, or trailer fields after the last chunk


class LineMeter:
    """The length of the line in progress and of the section's complete lines.

    `begin` is called from a parser callback while a piece is parsed, `measure` after each
    piece. A section that begins right after a line feed in the piece is measured exactly;
    a head that begins after a Content-Length body in the same piece is measured from the
    next piece on (its request line is bounded by the parser callbacks meanwhile).
    """

    __slots__ = ("_anchored", "_fresh", "completed", "line_bytes", "partial", "section",
                 "section_bytes")  # fmt: skip

    def __init__(self, line_bytes: int, section_bytes: int) -> None:
        self.line_bytes = line_bytes
        self.section_bytes = section_bytes
        self.section = Section.BODY
        self.partial = 0
        self.completed = 0
        self._fresh = False
        self._anchored = True

    def begin(self, section: Section, after_line_feed: bool = True) -> None:
        self.section = section
        self.partial = 0
        self.completed = 0
        self._fresh = True
        self._anchored = after_line_feed

    def end(self) -> None:
        self.section = Section.BODY

    def add_line(self, size: int) -> RequestRejected | None:
        """A complete field of `size` bytes; the rejection when the section is too large."""
        self.completed += size
        if self.completed > self.section_bytes:
            return self._too_large()
        return None

    @property
    def in_trailers(self) -> bool:
        """Bytes arrived after the last chunk's header: they are trailer fields."""
        return self.section is Section.AFTER_CHUNK_HEADER and (
            self.partial > 0 or self.completed > 0
        )

    def measure(self, data: bytes, start: int, end: int) -> RequestRejected | None:
        """After `data[start:end]` was parsed: the rejection when a bound is crossed."""
        if self.section is Section.BODY:
            return None
        line_feed = data.rfind(b"\n", start, end)
        if self._fresh:
            self._fresh = False
            if not self._anchored:
                self.partial = 0
            else:
                self.partial = end - (line_feed + 1 if line_feed >= 0 else start)
        elif line_feed >= 0:
            self.partial = end - line_feed - 1
        else:
            self.partial += end - start
        if self.partial > self.line_bytes:
            if self.section is Section.CHUNK_SIZE:
                return RequestRejected(400, "chunk-size line too long")
            return RequestRejected(431, self._name() + " field too large")
        if self.completed + self.partial > self.section_bytes:
            return self._too_large()
        return None

    def _name(self) -> str:
        return "header" if self.section is Section.HEAD else "trailer"

    def _too_large(self) -> RequestRejected:
        section = "request head" if self.section is Section.HEAD else "trailer section"
        return RequestRejected(431, f"{section} too large")
