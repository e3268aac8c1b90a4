"""The admin port of a proxy run as several workers: one /metrics and /status for all of
them, merged from each worker's own admin port; other pages are the first worker's."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from servicepool_proxy.observe.merged import merge_metrics, merge_status

FETCH_SECONDS = 5.0
NO_WORKER = "no worker answered\n"


class WorkersAdmin:
    """Answers the admin pages from the workers' admin ports (`worker_urls`: their bases)."""

    def __init__(
        self, worker_urls: Callable[[], list[str]], shutting_down: Callable[[], bool]
    ) -> None:
        self.worker_urls = worker_urls
        self.shutting_down = shutting_down
        self._client: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/status", self.status)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/{tail:.*}", self.first_worker)
        app.on_cleanup.append(self._close)
        return app

    def client(self) -> aiohttp.ClientSession:
        if self._client is None:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=FETCH_SECONDS)
            self._client = aiohttp.ClientSession(timeout=timeout)
        return self._client

    async def _close(self, _: web.Application) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def fetch(self, url: str) -> tuple[int, str] | None:
        try:
            limit = aiohttp.ClientTimeout(total=FETCH_SECONDS)
            async with self.client().get(url, timeout=limit) as answer:
                return answer.status, await answer.text()
        except (aiohttp.ClientError, TimeoutError):
            return None  # a worker being restarted

    async def from_each(self, path: str) -> list[tuple[str, int, str]]:
        """What every worker that answers says on `path`: (its admin base, status, text)."""
        bases = self.worker_urls()
        answers = await asyncio.gather(*(self.fetch(base + path) for base in bases))
        return [(base, *answer) for base, answer in zip(bases, answers, strict=True) if answer]

    async def healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, _: web.Request) -> web.Response:
        """Ready while not draining and any worker is ready (the kernel only hands
        connections to workers that listen)."""
        if self.shutting_down():
            return web.Response(status=503, text="shutting down\n")
        answers = await self.from_each("/readyz")
        if any(status == 200 for _, status, _ in answers):
            return web.Response(text="ready\n")
        return web.Response(status=503, text=answers[0][2] if answers else NO_WORKER)

    async def status(self, request: web.Request) -> web.Response:
        answers = [(base, text) for base, code, text in await self.from_each("/status")
                   if code == 200]  # fmt: skip
        if not answers:
            return web.Response(status=503, text=NO_WORKER)
        merged = merge_status([json.loads(text) for _, text in answers])
        for worker, (base, _) in zip(merged["workers"], answers, strict=True):
            worker["admin"] = base
        return web.json_response(merged)

    async def metrics(self, _: web.Request) -> web.Response:
        texts = [text for _, code, text in await self.from_each("/metrics") if code == 200]
        if not texts:
            return web.Response(status=503, text=NO_WORKER)
        body = merge_metrics(texts)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def first_worker(self, request: web.Request) -> web.StreamResponse:
        """Any other page (streamed, so event streams work) as the first worker shows it."""
        urls = self.worker_urls()
        response: web.StreamResponse | None = None
        try:
            if not urls:
                raise aiohttp.ClientError("no worker")
            async with self.client().get(urls[0] + request.path_qs) as answer:
                response = web.StreamResponse(status=answer.status)
                response.content_type = answer.content_type
                await response.prepare(request)
                async for chunk in answer.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except (aiohttp.ClientError, TimeoutError):
            if response is not None and response.prepared:
                # The worker went away mid-answer: end this one (its head is sent already).
                if request.transport is not None:
                    request.transport.close()
                return response
            return web.Response(status=503, text=NO_WORKER)
