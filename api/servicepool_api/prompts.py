"""The prompt of an OpenAI-shaped request body, as one canonical text (pure).

Chat requests give their `tools` and `messages` (role and content; content may be a string
or a list of parts), completion requests their `prompt`. The text is canonical: the same
conversation gives the same text however its JSON was formatted, and a later turn of it
starts with the earlier turn's text, so prefixes of the text are prefixes of the prompt.
"""

from __future__ import annotations

import json
from typing import Any

MESSAGE_END = "\x1e"  # between messages: a byte no prompt text carries by accident
ROLE_END = "\x1f"


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys, for parts that are not plain text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_text(content: Any) -> str:
    """A message's content: a string, or a list of parts (text parts give their text)."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        return "".join(
            part["text"]
            if isinstance(part, dict) and isinstance(part.get("text"), str)
            else canonical_json(part)
            for part in content
        )
    return canonical_json(content)


def message_text(message: Any) -> str:
    """One chat message as role + content (tool calls, if any, after the content)."""
    if not isinstance(message, dict):
        return canonical_json(message) + MESSAGE_END
    text = str(message.get("role", "")) + ROLE_END + content_text(message.get("content"))
    if "tool_calls" in message:
        text += canonical_json(message["tool_calls"])
    return text + MESSAGE_END


def prompt_text(document: Any) -> str | None:
    """The prompt of a chat or completion request body (parsed JSON), or None."""
    if not isinstance(document, dict):
        return None
    messages = document.get("messages")
    if isinstance(messages, list) and messages:
        tools = document.get("tools")
        head = canonical_json(tools) + MESSAGE_END if tools else ""
        return head + "".join(message_text(message) for message in messages)
    prompt = document.get("prompt")
    if isinstance(prompt, str):
        return prompt or None
    if isinstance(prompt, list) and prompt:
        if all(isinstance(item, str) for item in prompt):
            return MESSAGE_END.join(prompt)
        return canonical_json(prompt)  # token ids, or a batch of them
    return None
