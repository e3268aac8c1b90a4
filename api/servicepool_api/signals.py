"""Parse what members say about themselves: load reports, model lists, usage blocks and
where an answer's first token is (pure)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from .kinds import RequestKind, listed_kinds
from .spec import Capacity


class SignalError(ValueError):
    """A member's report could not be understood; the message says why."""


@dataclass(frozen=True, slots=True)
class LoadReport:
    """A member's own view of its load."""

    queued: float
    running: float
    workers: float | None = None
    cache_usage: float | None = None


def dotted(document: Any, path: str) -> Any:
    """The value at a dotted path such as 'stats.queue.depth' (list indexes allowed)."""
    value = document
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise SignalError(f"no field {path!r}")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SignalError(f"{what} is not a number: {value!r}")
    return float(value)


def parse_status_report(body: bytes, policy: Capacity) -> LoadReport:
    """A JSON status document such as {"queued": 3, "dispatched": 2, "active_workers": 4}."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SignalError(f"status is not JSON: {exc}") from None
    fields = policy.fields
    workers: float | None
    try:
        workers = _number(dotted(document, fields.workers), fields.workers)
    except SignalError:
        workers = None
    return LoadReport(
        queued=_number(dotted(document, fields.queued), fields.queued),
        running=_number(dotted(document, fields.running), fields.running),
        workers=workers,
    )


def parse_prometheus_values(text: str) -> dict[str, float]:
    """Sum of every sample per metric name in Prometheus text format (labels ignored)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name_end = len(line)
        for marker in ("{", " "):
            position = line.find(marker)
            if position != -1:
                name_end = min(name_end, position)
        name = line[:name_end]
        rest = line[line.rfind("}") + 1 :] if "{" in line else line[name_end:]
        parts = rest.split()
        if not parts:
            continue
        try:
            value = float(parts[0])
        except ValueError:
            continue
        if math.isfinite(value):
            values[name] = values.get(name, 0.0) + value
    return values


def parse_metrics_report(text: str, policy: Capacity) -> LoadReport:
    """Load numbers from a Prometheus metrics page (vLLM's metric names by default)."""
    values = parse_prometheus_values(text)
    names = policy.metrics
    for required in (names.queued, names.running):
        if required not in values:
            raise SignalError(f"metric {required!r} not found")
    return LoadReport(
        queued=values[names.queued],
        running=values[names.running],
        workers=values.get(names.workers) if names.workers else None,
        cache_usage=values.get(names.cacheUsage) if names.cacheUsage else None,
    )


def parse_load_report(body: bytes, policy: Capacity) -> LoadReport:
    """A load report from the endpoint the policy names (JSON status or Prometheus text)."""
    if policy.source == "status":
        return parse_status_report(body, policy)
    return parse_metrics_report(body.decode("utf-8", "replace"), policy)


@dataclass(frozen=True, slots=True)
class ModelList:
    """What a member's model list says: each model with its owner ("" when not said), and the
    request kinds its cards say the member serves (empty: every kind, kinds.listed_kinds)."""

    owners: dict[str, str]
    kinds: frozenset[RequestKind]


def parse_model_list(body: bytes) -> ModelList:
    """An OpenAI-style listing: {"data": [{"id": "m", "owned_by": "org"}, ...]}, cards
    perhaps saying what their model does ("capabilities", "task" or "type")."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SignalError(f"model list is not JSON: {exc}") from None
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list):
        raise SignalError("model list has no 'data' array")
    cards = [item for item in data if isinstance(item, dict) and "id" in item]
    owners = {str(card["id"]): str(card.get("owned_by") or "") for card in cards}
    return ModelList(owners, listed_kinds(cards))


def find_usage_in_sse(chunk: bytes) -> dict[str, Any] | None:
    """The last `usage` object in the SSE data lines of a chunk, if any."""
    if b'"usage"' not in chunk:
        return None
    found = None
    for line in chunk.split(b"\n"):
        if not line.startswith(b"data:") or b'"usage"' not in line:
            continue
        try:
            event = json.loads(line[5:].strip())
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("usage"), dict):
            found = event["usage"]
    return found


TOKEN_FIELDS = ("content", "reasoning_content", "text", "tool_calls", "function_call")
SSE_LINE_LIMIT = 64 * 1024  # a longer unfinished line counts as content


def sse_event_has_token(data: bytes) -> bool:
    """Whether one SSE `data:` payload carries output: JSON with OpenAI-style `choices` needs
    a choice with non-empty content (not the role-only first event, not the usage event);
    [DONE] and empty data carry none; any other data does."""
    data = data.strip()
    if not data or data == b"[DONE]":
        return False
    try:
        event = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return True
    choices = event.get("choices") if isinstance(event, dict) else None
    if not isinstance(choices, list):
        return True
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        parts = (choice, delta) if isinstance(delta, dict) else (choice,)
        if any(part.get(name) for part in parts for name in TOKEN_FIELDS):
            return True
    return False


class FirstToken:
    """Finds the first body chunk of an answer that carries output: for server-sent events,
    the first `data:` event with a token (events may span chunks); otherwise any byte."""

    __slots__ = ("_pending", "event_stream")

    def __init__(self, event_stream: bool) -> None:
        self.event_stream = event_stream
        self._pending = b""

    def found_in(self, chunk: bytes) -> bool:
        """Whether `chunk` (the next piece of the body) completes the first token."""
        if not self.event_stream:
            return bool(chunk)
        text = self._pending + chunk
        end = text.rfind(b"\n") + 1
        self._pending = text[end:]
        if len(self._pending) > SSE_LINE_LIMIT:
            return True
        for line in text[:end].split(b"\n"):
            if line.startswith(b"data:") and sse_event_has_token(line[5:]):
                return True
        return False


def find_usage_in_json(body: bytes) -> dict[str, Any] | None:
    """The `usage` object of a JSON response body, if any."""
    if b'"usage"' not in body:
        return None
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    usage = document.get("usage") if isinstance(document, dict) else None
    return usage if isinstance(usage, dict) else None


def request_document(body: bytes) -> Any:
    """A JSON request body, parsed; None when it is not JSON."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def document_field(document: Any, path: str) -> str | None:
    """A string (or integer) field of a parsed request body at a dotted path, or None."""
    try:
        value = dotted(document, path)
    except SignalError:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value)
