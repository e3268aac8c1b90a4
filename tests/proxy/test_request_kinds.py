"""Members serve only some request kinds (`members[].capabilities`, or the kinds their model
list names), through the `servicepool-proxy` console script with member processes.

A chat-only member (model llama) and an embeddings-only one (model e5), round robin. Before,
only the model routed: half of the embeddings requests without a `model` reached the chat
member, a chat request naming e5 went to the embeddings member, and a rerank request (no
member serves one) was answered by whichever member came next. Now each kind goes only to
members serving it, and a kind no member serves is a 404 naming the kinds the pool serves.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import requests

from tests.support import (
    MemberProcess,
    ProxyProcess,
    eventually,
    start_member_process,
    start_proxy_process,
)

COUNT = 20


def start_member(started: list[Any], name: str, *extra: str) -> MemberProcess:
    process = start_member_process(name, extra=["--service-time", "0.001", *extra])
    started.append(process)
    return process


def post(process: ProxyProcess, path: str, body: dict[str, Any]) -> requests.Response:
    url = f"http://127.0.0.1:{process.port}{path}"
    return requests.post(url, json=body, headers={"X-ServicePool-Explain": "1"}, timeout=10)


def members_of(answers: list[requests.Response]) -> Counter[str]:
    return Counter(a.headers.get("X-ServicePool-Member", str(a.status_code)) for a in answers)


def admin(process: ProxyProcess, path: str) -> requests.Response:
    return requests.get(f"http://127.0.0.1:{process.admin_port}{path}", timeout=5)


def embeddings_and_chats(process: ProxyProcess) -> tuple[Counter[str], Counter[str]]:
    """Which member answered COUNT embeddings requests and COUNT chat requests, neither
    naming a model."""
    embeddings = [post(process, "/v1/embeddings", {"input": "x"}) for _ in range(COUNT)]
    chats = [post(process, "/v1/chat/completions", {"max_tokens": 1}) for _ in range(COUNT)]
    return members_of(embeddings), members_of(chats)


def test_declared_capabilities_send_each_kind_only_to_members_serving_it(started, tmp_path):
    chat = start_member(started, "chat", "--models", "llama")
    embed = start_member(started, "embed", "--models", "e5")
    spec = {"strategy": "roundRobin", "members": [
        {"name": "chat", "url": chat.url, "models": ["llama"],
         "capabilities": ["chat", "completions"]},
        {"name": "embed", "url": embed.url, "models": ["e5"], "capabilities": ["embeddings"]},
    ]}  # fmt: skip
    process = start_proxy_process(tmp_path, spec, "--explain", console_script=True)
    started.append(process)

    embeddings, chats = embeddings_and_chats(process)
    assert embeddings == {"embed": COUNT}, (
        f"before: 50% of embeddings requests without a model reached the chat-only member; "
        f"after: {100 * embeddings['chat'] / COUNT:.0f}% ({embeddings})"
    )
    assert chats == {"chat": COUNT}, f"before: 50% of chats reached embed; after: {chats}"

    wrong = [post(process, "/v1/chat/completions", {"model": "e5"}) for _ in range(10)]
    codes = Counter(a.status_code for a in wrong)
    assert codes == {404: 10}, (
        f"before: 10 of 10 chat requests naming the embeddings model e5 were answered by the "
        f"embeddings member; after: {10 - codes[404]} ({members_of(wrong)})"
    )
    assert wrong[0].json() == {
        "error": "unserved-kind", "pool": "p",
        "detail": "no member serves chat requests for model 'e5'; members serving model 'e5' "
        "serve: embeddings",
    }  # fmt: skip

    rerank = [post(process, "/v1/rerank", {"query": "q", "documents": ["d"]}) for _ in range(5)]
    assert Counter(a.status_code for a in rerank) == {404: 5}, (
        f"before: 5 of 5 rerank requests were answered by a member that serves none; after: "
        f"{members_of(rerank)}"
    )
    assert rerank[0].headers["X-ServicePool-Error"] == "unserved-kind"
    assert rerank[0].json()["detail"] == (
        "no member serves rerank requests; this pool serves: chat, completions, embeddings"
    )

    explained = post(process, "/v1/embeddings", {"input": "x"}).headers["X-ServicePool-Decision"]
    assert "skipped=chat:kind-not-served" in explained, explained
    metrics = admin(process, "/metrics").text
    line = 'servicepool_rejected_total{pool="p",reason="unserved-kind"} 15.0'
    assert line in metrics, [m for m in metrics.splitlines() if "rejected_total{" in m]
    status = {m["name"]: m["capabilities"] for m in admin(process, "/status").json()["members"]}
    assert status == {"chat": ["chat", "completions"], "embed": ["embeddings"]}
    print(
        f"embeddings to the chat member: 0 of {COUNT} (before: 50%); chats naming e5: "
        "10 of 10 refused with a 404 (before: 10 answered by embed); rerank: 5 of 5 404s"
    )


def test_kinds_a_members_model_list_names_route_like_declared_ones(started, tmp_path):
    chat = start_member(started, "chat", "--models", "llama", "--capabilities", "completion")
    embed = start_member(started, "embed", "--models", "e5", "--capabilities", "embedding")
    spec = {"strategy": "roundRobin",
            "members": [{"name": m.name, "url": m.url} for m in (chat, embed)]}  # fmt: skip
    process = start_proxy_process(tmp_path, spec, console_script=True)
    started.append(process)

    def listed() -> dict[str, list[str]]:
        return {m["name"]: m["capabilities"] for m in admin(process, "/status").json()["members"]}

    eventually(lambda: all(listed().values()), 5)
    assert listed() == {"chat": ["chat", "completions"], "embed": ["embeddings"]}, listed()
    embeddings, chats = embeddings_and_chats(process)
    assert embeddings == {"embed": COUNT}, (
        f"before: 50% of embeddings requests reached the member whose model list says "
        f"completion; after: {100 * embeddings['chat'] / COUNT:.0f}% ({embeddings})"
    )
    assert chats == {"chat": COUNT}, f"before: 50% of chats reached embed; after: {chats}"
