"""Members that declare models turn model-aware routing on, with no spec.models block."""

from __future__ import annotations

from .conftest import pool_document


async def test_an_unknown_model_on_a_pool_whose_members_declare_models_is_a_404_listing_them(
    members, proxy, client
):
    a, b = await members("a", workers=4), await members("b", workers=4)
    doc = pool_document(
        [{"name": "a", "url": a.url, "models": ["small"]},
         {"name": "b", "url": b.url, "models": ["large", "medium"]}],
        healthCheck={"enabled": False},
    )  # fmt: skip
    assert "models" not in doc["spec"]
    running = await proxy(doc)
    url = running.url + "/v1/chat/completions"
    for _ in range(4):
        async with client.post(url, json={"model": "large", "max_tokens": 1}) as response:
            assert response.status == 200
            assert response.headers["X-ServicePool-Member"] == "b"
    async with client.post(url, json={"model": "gpt-9", "max_tokens": 1}) as response:
        assert response.status == 404
        body = await response.json()
    assert body["error"] == "unknown-model"
    assert "'gpt-9'" in body["detail"] and "large, medium, small" in body["detail"]
    assert not a.behaviour.models_served and not b.behaviour.models_served.get("gpt-9")
    async with client.get(running.url + "/v1/models") as response:
        listing = await response.json()
    assert sorted(item["id"] for item in listing["data"]) == ["large", "medium", "small"]


async def test_a_pool_whose_members_declare_no_models_routes_any_model_anywhere(
    members, proxy, client
):
    a = await members("a", workers=4)
    running = await proxy(pool_document([{"name": "a", "url": a.url}],
                                        healthCheck={"enabled": False}))  # fmt: skip
    async with client.post(running.url + "/v1/chat/completions",
                           json={"model": "anything", "max_tokens": 1}) as response:  # fmt: skip
        assert response.status == 200
