"""Request kinds: the kind of a request from its method and path, the kinds a model list
says a member serves, and members filtered by kind (tables over the pure logic)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from servicepool_api.kinds import RequestKind, card_kinds, listed_kinds, request_kind
from servicepool_api.signals import parse_model_list
from servicepool_api.spec import PoolSpec
from servicepool_proxy.balancer.decisions import SkipReason, classify, skip_reason
from servicepool_proxy.balancer.keys import RoutingKeys
from servicepool_proxy.balancer.member import MemberState
from servicepool_proxy.balancer.pool import Balancer, Unavailable
from servicepool_proxy.waitqueue import WaitQueue

K = RequestKind


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("POST", "/v1/chat/completions", K.CHAT),
        ("POST", "/chat/completions", K.CHAT),
        ("POST", "/v1/chat/completions/", K.CHAT),
        ("POST", "/v1/completions", K.COMPLETIONS),
        ("POST", "/completion", K.COMPLETIONS),  # llama.cpp
        ("POST", "/v1/responses", K.RESPONSES),
        ("POST", "/v1/embeddings", K.EMBEDDINGS),
        ("POST", "/embedding", K.EMBEDDINGS),  # llama.cpp
        ("POST", "/embed", K.EMBEDDINGS),  # TEI
        ("POST", "/v1/rerank", K.RERANK),
        ("POST", "/rerank", K.RERANK),
        ("POST", "/v2/rerank", K.RERANK),  # vLLM
        ("POST", "/v1/score", K.RERANK),  # vLLM
        ("POST", "/reranking", K.RERANK),  # llama.cpp
        ("POST", "/v1/audio/transcriptions", K.AUDIO),
        ("POST", "/v1/audio/speech", K.AUDIO),
        ("POST", "/v1/images/generations", K.IMAGES),
        ("POST", "/v1/moderations", K.MODERATIONS),
        # no kind: other methods, other paths
        ("GET", "/v1/chat/completions", None),
        ("GET", "/v1/models", None),
        ("POST", "/tokenize", None),
        ("POST", "/v1/chat", None),
        ("POST", "/v1/audio", None),
        ("POST", "/", None),
        ("POST", "/v3/embeddings", None),
        ("POST", "/v1/embeddingsx", None),
    ],
)
def test_the_kind_of_a_request_comes_from_its_method_and_path(
    method: str, path: str, kind: RequestKind | None
) -> None:
    assert request_kind(method, path) == kind


@pytest.mark.parametrize(
    ("card", "kinds"),
    [
        ({"id": "m"}, set()),
        ({"id": "m", "capabilities": ["completion", "tools"]}, {K.CHAT, K.COMPLETIONS}),  # Ollama
        ({"id": "m", "capabilities": ["embedding"]}, {K.EMBEDDINGS}),
        ({"id": "m", "task": "embed"}, {K.EMBEDDINGS}),  # vLLM's task names
        ({"id": "m", "task": "score"}, {K.RERANK}),
        ({"id": "m", "task": "transcription"}, {K.AUDIO}),
        ({"id": "m", "type": "llm"}, {K.CHAT, K.COMPLETIONS}),  # LM Studio
        ({"id": "m", "type": "embeddings"}, {K.EMBEDDINGS}),
        ({"id": "m", "capabilities": ["Chat", "rerank"]}, {K.CHAT, K.RERANK}),  # our own names
        ({"id": "m", "capabilities": ["vision", 3], "type": "model"}, set()),  # nothing known
        ({"id": "m", "capabilities": "embed"}, {K.EMBEDDINGS}),
    ],
)
def test_a_model_card_says_what_its_model_serves_in_words_servers_use(
    card: dict[str, Any], kinds: set[RequestKind]
) -> None:
    assert card_kinds(card) == kinds


@pytest.mark.parametrize(
    ("cards", "kinds"),
    [
        ([], set()),
        ([{"id": "a", "task": "embed"}, {"id": "b", "task": "generate"}],
         {K.EMBEDDINGS, K.CHAT, K.COMPLETIONS}),
        # one card that says nothing: the member may serve anything
        ([{"id": "a", "task": "embed"}, {"id": "b"}], set()),
    ],
)  # fmt: skip
def test_a_member_serves_the_union_of_its_cards_kinds_when_every_card_says(
    cards: list[dict[str, Any]], kinds: set[RequestKind]
) -> None:
    assert listed_kinds(cards) == kinds


def test_the_model_list_parser_returns_owners_and_kinds() -> None:
    body = b'{"data": [{"id": "e5", "owned_by": "o", "capabilities": ["embedding"]}]}'
    listed = parse_model_list(body)
    assert listed.owners == {"e5": "o"} and listed.kinds == {K.EMBEDDINGS}


def test_capabilities_are_request_kinds_each_at_most_once_in_the_crd() -> None:
    member = {"name": "a", "url": "http://a:1", "capabilities": ["chat", "embeddings"]}
    spec = PoolSpec.model_validate({"members": [member]})
    assert spec.members[0].capabilities == [K.CHAT, K.EMBEDDINGS]
    with pytest.raises(ValidationError, match="capabilities"):
        PoolSpec.model_validate({"members": [{**member, "capabilities": ["chatting"]}]})
    selector = {"matchLabels": {"app": "e"}, "port": 80, "capabilities": ["embeddings"]}
    assert PoolSpec.model_validate({"memberSelector": selector}).memberSelector is not None
    schema = PoolSpec.model_json_schema()["$defs"]["Member"]["properties"]["capabilities"]
    assert schema["x-kubernetes-list-type"] == "set"


CHAT = {"name": "chat", "url": "http://chat:1", "capabilities": ["chat", "completions"],
        "models": ["llama"]}  # fmt: skip
EMBED = {"name": "embed", "url": "http://embed:1", "capabilities": ["embeddings"],
         "models": ["e5"]}  # fmt: skip
ANY = {"name": "any", "url": "http://any:1", "models": ["llama"]}


def balancer(*members: dict[str, Any]) -> Balancer:
    return Balancer(PoolSpec.model_validate({"members": list(members)}), random.Random(1))


def picked(bal: Balancer, keys: RoutingKeys, count: int = 12) -> set[str] | str:
    """The members picked for `count` requests with the keys, or the one refusal's detail."""
    names: set[str] = set()
    for _ in range(count):
        choice = bal.choose(0.0, (), keys)
        if isinstance(choice, Unavailable):
            return choice.detail
        names.add(choice.name)
    return names


@pytest.mark.parametrize(
    ("members", "keys", "result"),
    [
        # no kind (no member declares one, or a path of no kind): any member, as before
        ((CHAT, EMBED), RoutingKeys(), {"chat", "embed"}),
        ((CHAT, EMBED), RoutingKeys(kind="embeddings"), {"embed"}),
        ((CHAT, EMBED), RoutingKeys(kind="chat"), {"chat"}),
        ((CHAT, EMBED, ANY), RoutingKeys(kind="embeddings"), {"embed", "any"}),
        ((CHAT, EMBED, ANY), RoutingKeys(kind="rerank"), {"any"}),
        ((CHAT, EMBED), RoutingKeys(model="llama", kind="completions"), {"chat"}),
        ((CHAT, EMBED),
         RoutingKeys(kind="rerank"),
         "no member serves rerank requests; this pool serves: chat, completions, embeddings"),
        ((CHAT, EMBED),
         RoutingKeys(model="e5", kind="chat"),
         "no member serves chat requests for model 'e5'; members serving model 'e5' serve: "
         "embeddings"),
        # an unknown model is refused as such first
        ((CHAT, EMBED), RoutingKeys(model="gpt", kind="chat"),
         "no member serves model 'gpt'; this pool serves: e5, llama"),
    ],
)  # fmt: skip
def test_only_members_serving_the_requests_kind_are_candidates(
    members: tuple[dict[str, Any], ...], keys: RoutingKeys, result: set[str] | str
) -> None:
    assert picked(balancer(*members), keys) == result


def test_a_refusal_for_the_kind_names_it_and_is_not_worth_waiting_for() -> None:
    refusal = balancer(CHAT, EMBED).choose(0.0, (), RoutingKeys(kind="audio"))
    assert isinstance(refusal, Unavailable)
    assert refusal.unserved_kind == "audio" and not refusal.saturated
    assert refusal.unknown_model is None


def test_discovered_kinds_count_like_declared_ones() -> None:
    bal = balancer({"name": "a", "url": "http://a:1"}, {"name": "b", "url": "http://b:1"})
    bal.by_name["a"].discovered_kinds = frozenset({"embeddings"})
    assert picked(bal, RoutingKeys(kind="embeddings"), 20) == {"a", "b"}
    assert picked(bal, RoutingKeys(kind="chat"), 20) == {"b"}  # b said nothing: any kind


def test_explain_gives_the_skip_reason_of_a_member_not_serving_the_kind() -> None:
    bal = balancer(CHAT, EMBED, ANY)
    chat = bal.by_name["chat"]
    assert skip_reason(chat, 0.0, (), None, "embeddings") is SkipReason.NO_KIND
    assert skip_reason(chat, 0.0, (), None, "chat") is None
    assert skip_reason(chat, 0.0, (), None, None) is None
    candidates, skipped = classify(bal.members, 0.0, (), None, "embeddings")
    assert [m.name for m in candidates] == ["embed", "any"]
    assert skipped == [("chat", "kind-not-served")]


def test_a_member_with_no_kinds_serves_every_kind() -> None:
    member = MemberState("m", "http://m:1")
    assert all(member.serves_kind(kind) for kind in RequestKind)
    member.declared_kinds = frozenset({"chat"})
    assert [kind for kind in RequestKind if member.serves_kind(kind)] == [K.CHAT]


def test_requests_of_one_model_but_another_kind_wait_in_another_group() -> None:
    chat, embed = RoutingKeys(model="m", kind="chat"), RoutingKeys(model="m", kind="embeddings")
    assert chat.wait_group() != embed.wait_group()
    assert RoutingKeys(model="m").wait_group() == RoutingKeys(model="m").wait_group()


async def test_a_freed_chat_slot_goes_to_a_chat_waiter_behind_an_embeddings_one() -> None:
    """Waiters are grouped by model and kind: were they grouped by model alone, the chat-only
    member's freed slot would be offered to the older embeddings waiter only."""
    bal = balancer({**CHAT, "maxInFlight": 1}, {**EMBED, "maxInFlight": 1})
    chat, embed = bal.by_name["chat"], bal.by_name["embed"]
    bal.acquire(chat, 0.0)
    bal.acquire(embed, 0.0)
    queue: WaitQueue[str] = WaitQueue(10, lambda _: None)

    def claim(keys: RoutingKeys) -> Callable[[], str | None]:
        def take() -> str | None:
            picked = bal.choose(0.0, (), keys)
            if isinstance(picked, Unavailable):
                return None
            bal.acquire(picked, 0.0)
            return picked.name

        return take

    embeddings, chatting = RoutingKeys(kind="embeddings"), RoutingKeys(kind="chat")
    first = asyncio.create_task(queue.wait(5, 1.0, embeddings.wait_group(), claim(embeddings)))
    second = asyncio.create_task(queue.wait(5, 2.0, chatting.wait_group(), claim(chatting)))
    await asyncio.sleep(0)
    bal.release(chat)
    queue.offer()
    assert await asyncio.wait_for(second, 1) == "chat"
    assert not first.done()
    bal.release(embed)
    queue.offer()
    assert await asyncio.wait_for(first, 1) == "embed"
