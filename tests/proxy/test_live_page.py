"""The live pool page: /ui is one self-contained document, /events streams snapshots."""

from __future__ import annotations

import asyncio
import json
import re
import time

from .conftest import pool_document

NO_PROBES = {"enabled": False}


async def next_snapshot(content: asyncio.StreamReader, seconds: float = 5.0) -> dict:
    """The next `data:` event of an SSE stream."""
    async with asyncio.timeout(seconds):
        while True:
            line = (await content.readline()).decode()
            if line.startswith("data: "):
                return json.loads(line[len("data: ") :])


async def test_ui_is_one_page_that_fetches_nothing_from_elsewhere(members, proxy, client):
    a = await members("a")
    running = await proxy(pool_document([{"name": "a", "url": a.url}], healthCheck=NO_PROBES))
    async with client.get(running.admin_url + "/ui") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        page = await response.text()
    assert 'new EventSource("events")' in page
    assert not re.search(r"https?://|<link|<script[^>]+src=|@import|url\(", page)


async def test_events_send_a_snapshot_at_once_and_another_on_a_change(members, proxy, client):
    a, b = await members("a"), await members("b")
    doc = pool_document([{"name": "a", "url": a.url}, {"name": "b", "url": b.url}],
                        healthCheck=NO_PROBES)  # fmt: skip
    running = await proxy(doc, explain=True)
    async with client.get(running.admin_url + "/events") as stream:
        assert stream.headers["Content-Type"] == "text/event-stream"
        opened = time.monotonic()
        first = await next_snapshot(stream.content)
        assert time.monotonic() - opened < 1.0
        assert [m["name"] for m in first["members"]] == ["a", "b"]
        assert first["decisions"] == []
        async with client.get(running.url + "/") as response:
            picked = response.headers["X-ServicePool-Member"]
        changed = await next_snapshot(stream.content)
        got = time.monotonic()
        assert changed["decisions"][0]["pick"] == picked
        assert changed["decisions"][0]["candidates"] == ["a", "b"]
        row = next(m for m in changed["members"] if m["name"] == picked)
        assert row["requests"] == 1
        # Its request rate moves once a rate window has passed: another event, and never
        # sooner than a tick (250 ms) after the last.
        later = await next_snapshot(stream.content)
        assert time.monotonic() - got >= 0.2
        assert later != changed
