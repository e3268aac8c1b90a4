"""Request kinds: what an inference request asks a member to do, from its method and path,
and the hints a member's model list gives about the kinds it serves (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any


class RequestKind(StrEnum):
    """What a request asks for, as its OpenAI-compatible path says."""

    CHAT = "chat"
    COMPLETIONS = "completions"
    RESPONSES = "responses"
    EMBEDDINGS = "embeddings"
    RERANK = "rerank"
    AUDIO = "audio"
    IMAGES = "images"
    MODERATIONS = "moderations"


# A POST to one of these paths (after an optional /v1 or /v2) is a request of the kind:
# OpenAI's paths, and the short ones of llama.cpp (/completion, /embedding, /reranking),
# Hugging Face TEI (/embed) and vLLM (/score, /v2/rerank).
PATHS: dict[str, RequestKind] = {
    "/chat/completions": RequestKind.CHAT,
    "/completions": RequestKind.COMPLETIONS,
    "/completion": RequestKind.COMPLETIONS,
    "/responses": RequestKind.RESPONSES,
    "/embeddings": RequestKind.EMBEDDINGS,
    "/embedding": RequestKind.EMBEDDINGS,
    "/embed": RequestKind.EMBEDDINGS,
    "/rerank": RequestKind.RERANK,
    "/reranking": RequestKind.RERANK,
    "/score": RequestKind.RERANK,
    "/moderations": RequestKind.MODERATIONS,
}
# And a POST under one of these prefixes.
PREFIXES: tuple[tuple[str, RequestKind], ...] = (
    ("/audio/", RequestKind.AUDIO),
    ("/images/", RequestKind.IMAGES),
)


def request_kind(method: str, path: str) -> RequestKind | None:
    """The kind of a request, or None for one of no kind (any method but POST, any other
    path: health, metrics, /tokenize...)."""
    if method != "POST":
        return None
    if path.startswith(("/v1/", "/v2/")):
        path = path[3:]
    if len(path) > 1:
        path = path.rstrip("/")
    kind = PATHS.get(path)
    if kind is not None:
        return kind
    for prefix, kind in PREFIXES:
        if path.startswith(prefix):
            return kind
    return None


_CHAT_AND_COMPLETIONS = frozenset({RequestKind.CHAT, RequestKind.COMPLETIONS})
# Words servers use in a model list for what a model does, and the kinds each means
# (besides the kinds' own names): Ollama's capabilities ("completion", "embedding"), vLLM's
# tasks ("generate", "embed", "score", "transcription"), LM Studio's types ("llm", "vlm").
HINTS: dict[str, frozenset[RequestKind]] = {
    **{kind.value: frozenset({kind}) for kind in RequestKind},
    "completion": _CHAT_AND_COMPLETIONS,
    "generate": _CHAT_AND_COMPLETIONS,
    "llm": _CHAT_AND_COMPLETIONS,
    "vlm": _CHAT_AND_COMPLETIONS,
    "embedding": frozenset({RequestKind.EMBEDDINGS}),
    "embed": frozenset({RequestKind.EMBEDDINGS}),
    "score": frozenset({RequestKind.RERANK}),
    "transcription": frozenset({RequestKind.AUDIO}),
}
# The fields of a model card (an entry of GET /v1/models' data) that may carry those words.
HINT_FIELDS = ("capabilities", "task", "type")


def card_kinds(card: dict[str, Any]) -> frozenset[RequestKind]:
    """The kinds one model card says its model serves; empty when it says nothing known."""
    kinds: set[RequestKind] = set()
    for field in HINT_FIELDS:
        value = card.get(field)
        words = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        for word in words:
            if isinstance(word, str):
                kinds.update(HINTS.get(word.lower(), ()))
    return frozenset(kinds)


def listed_kinds(cards: Iterable[dict[str, Any]]) -> frozenset[RequestKind]:
    """The kinds a member serves by its model cards: their union when every card says; empty
    (every kind) when there are none or one says nothing known."""
    kinds: set[RequestKind] = set()
    for card in cards:
        found = card_kinds(card)
        if not found:
            return frozenset()
        kinds.update(found)
    return frozenset(kinds)
