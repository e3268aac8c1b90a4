"""cacheAware's model of each member's cache: sizes engines tell, placement of new prefixes
by what members hold, and the closed loop from the cached tokens answers report."""

from __future__ import annotations

from collections import Counter

import pytest

from servicepool_api.engine_cache import CacheSize, parse_cache_size
from servicepool_api.llm_policies import CacheAware
from servicepool_api.loader import parse_pool
from servicepool_proxy.balancer.cache_aware import family_place, pick_cache_aware, place_new_prefix
from servicepool_proxy.balancer.cache_model import CharsPerToken, cached_tokens, correct
from servicepool_proxy.balancer.keys import RoutingKeys
from servicepool_proxy.balancer.member import MemberState
from servicepool_proxy.balancer.placement import Placement
from servicepool_proxy.balancer.pool import Balancer
from servicepool_proxy.balancer.prefix import PrefixBlocks
from servicepool_proxy.balancer.rendezvous import rendezvous_score

from .test_cache_aware import members, prompt

POLICY = CacheAware(blockChars=16)
VLLM_INFO = (
    b"# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n"
    b'vllm:cache_config_info{block_size="16",cache_dtype="auto",enable_prefix_caching="True",'
    b'gpu_memory_utilization="0.9",num_cpu_blocks="0",num_gpu_blocks="2048"} 1.0\n'
)


def cache_aware_balancer(**settings: object) -> Balancer:
    """A cacheAware pool of one member, blocks of 16 characters, and these settings."""
    return Balancer(parse_pool({
        "metadata": {"name": "p"},
        "spec": {"strategy": "cacheAware", "cacheAware": {"blockChars": 16, **settings},
                 "members": [{"name": "a", "url": "http://198.18.0.1"}]},
    }).spec)  # fmt: skip


# --- what engines say ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/props", b'{"total_slots": 2, "default_generation_settings": {"n_ctx": 4096}}',
         CacheSize(8192, 2, "props")),
        ("/props", b'{"total_slots": 2}', None),
        ("/props", b'{"total_slots": 0, "default_generation_settings": {"n_ctx": 9}}', None),
        ("/props", b"not json", None),
        ("/props", b"[1, 2]", None),
        ("/metrics", VLLM_INFO, CacheSize(2048 * 16, 0, "metrics")),
        ("/metrics", b"vllm:num_requests_waiting 0\n", None),
        ("/metrics", b'vllm:cache_config_info{block_size="16"} 1.0\n', None),
    ],
)  # fmt: skip
def test_an_engine_tells_its_cache_size(path: str, body: bytes, expected: CacheSize | None) -> None:
    assert parse_cache_size(path, body) == expected


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"prompt_tokens": 9, "prompt_tokens_details": {"cached_tokens": 4}}, 4),
        ({"prompt_tokens": 9, "prompt_tokens_details": {"cached_tokens": 0}}, 0),
        ({"prompt_tokens": 9}, None),
        ({"prompt_tokens_details": None}, None),
        ({"prompt_tokens_details": {"cached_tokens": -1}}, None),
        ({"prompt_tokens_details": {"cached_tokens": True}}, None),
    ],
)
def test_the_cached_tokens_of_an_answer(usage: dict, expected: int | None) -> None:
    assert cached_tokens(usage) == expected


# --- placement of new prefixes ---------------------------------------------------------


def places(pool: list[MemberState], tenants: range, policy: CacheAware) -> list[str]:
    """Each tenant's place (where its family belongs), as the pool's index stands."""
    return [family_place(pool, prompt(str(t))[0], 1.0, policy).name for t in tenants]


def send(
    pool: list[MemberState], tenants: list[int], policy: CacheAware, shared: bool = False
) -> list[str]:
    """Send each tenant's prompt once, in this order; where each went, by tenant."""
    went = {}
    placement = Placement(shared)
    for tenant in tenants:
        member = pick_cache_aware(pool, prompt(str(tenant)), 1.0, policy, placement=placement)
        member.prefixes.record(prompt(str(tenant)), 1.0)
        went[tenant] = member.name
    return [went[t] for t in sorted(went)]


@pytest.mark.parametrize("shared", [False, True])
def test_new_prefixes_fill_the_members_evenly_not_by_hash_alone(shared: bool) -> None:
    # Six tenants on three members: by rendezvous hash alone one member gets three or more.
    pool = members("a", "b", "c")
    policy = CacheAware(blockChars=16, loadFactor=1.0)
    went = send(pool, list(range(6)), policy, shared)
    if shared:  # replicas: the families' places, where they converge
        went = places(pool, range(6), policy)
    assert sorted(Counter(went).values()) == [2, 2, 2]


@pytest.mark.parametrize("shared", [False, True])
def test_the_share_of_hot_prefixes_follows_what_each_member_holds(shared: bool) -> None:
    pool = members("big", "small")
    pool[0].prefixes.resize(3000)
    pool[1].prefixes.resize(1000)
    policy = CacheAware(blockChars=16, loadFactor=1.0)
    went = send(pool, list(range(8)), policy, shared)
    if shared:
        went = places(pool, range(8), policy)
    assert Counter(went) == {"big": 6, "small": 2}


def test_replicas_that_meet_families_in_different_orders_agree() -> None:
    # Each replica has its own index; they meet the same eight tenants in opposite orders.
    # Placing by each one's arrival order split 3 of 8 families between two members.
    policy = CacheAware(blockChars=16, loadFactor=1.0)
    one, two = members("a", "b", "c"), members("a", "b", "c")
    send(one, list(range(8)), policy, shared=True)
    send(two, list(reversed(range(8))), policy, shared=True)
    assert places(one, range(8), policy) == places(two, range(8), policy)
    # From then on both send every tenant to the same member.
    again = send(one, list(range(8)), policy, shared=True)
    assert again == send(two, list(range(8)), policy, shared=True)


def test_prefixes_not_sent_lately_are_not_hot() -> None:
    index = PrefixBlocks()
    index.record(prompt("old"), 0.0)
    index.record(prompt("new"), 100.0)
    assert index.hot(100.0, 60) == 1
    assert index.hot(100.0, 200) == 2


def test_a_forgotten_prefix_is_not_held() -> None:
    index = PrefixBlocks(limit=15)
    index.record(prompt("a"), 1.0)  # 10 blocks
    index.record(prompt("b"), 2.0)  # 10 more: a's 5 deepest blocks are forgotten first
    assert index.roots() == [prompt("a")[0], prompt("b")[0]]
    index.record(prompt("c"), 3.0)  # a is forgotten whole
    assert index.roots() == [prompt("b")[0], prompt("c")[0]]
    assert index.hot(3.0, 60) == 2


def test_a_lone_proxy_places_at_the_rendezvous_home_while_it_has_room() -> None:
    pool = members("a", "b", "c", "d")
    homes = sorted(pool, key=lambda m: m.name)
    # Nothing hot anywhere: the first in the order given.
    assert place_new_prefix(homes, 0.0, POLICY) is homes[0]


def test_a_family_alone_is_placed_at_its_rendezvous_home() -> None:
    pool = members("a", "b", "c", "d")
    root = prompt("t")[0]
    home = max(pool, key=lambda m: rendezvous_score(m.name, m.weight, root))
    assert family_place(pool, root, 0.0, POLICY) is home


# --- the closed loop -------------------------------------------------------------------


def test_an_engine_that_lost_what_the_index_predicted_shrinks_the_index() -> None:
    member = members("a")[0]
    member.prefixes.resize(1000)
    correct(member, 10, predicted_blocks=10, cached=0, tokens_per_block=4.0, policy=POLICY)
    assert member.prefixes.limit == 800
    # Never below two of this prompt.
    for _ in range(50):
        correct(member, 10, predicted_blocks=10, cached=0, tokens_per_block=4.0, policy=POLICY)
    assert member.prefixes.limit == 20


def test_an_engine_that_held_more_than_a_full_index_grows_it() -> None:
    member = members("a")[0]
    member.prefixes.resize(20)
    member.prefixes.record(prompt("a"))  # 10 blocks
    member.prefixes.record(prompt("b"))  # 20: full
    correct(member, 10, predicted_blocks=0, cached=40, tokens_per_block=4.0, policy=POLICY)
    assert member.prefixes.limit == 30
    # A hit as predicted changes nothing.
    correct(member, 10, predicted_blocks=10, cached=40, tokens_per_block=4.0, policy=POLICY)
    assert member.prefixes.limit == 30


def test_characters_per_token_are_learned_from_usage() -> None:
    ratio = CharsPerToken()
    for _ in range(200):
        ratio.add(600, 100)
    assert ratio.value == pytest.approx(6.0, abs=0.01)
    ratio.add(0, 10)
    ratio.add(10, 0)
    assert ratio.value == pytest.approx(6.0, abs=0.01)


def test_the_balancer_learns_from_an_answers_usage() -> None:
    balancer = cache_aware_balancer()
    member = balancer.members[0]
    keys = RoutingKeys(prefix=prompt("t"), prompt_chars=160)
    lease = balancer.begin(member, 1.0, keys)
    balancer.learn(lease, {"prompt_tokens": 40, "prompt_tokens_details": {"cached_tokens": 0}})
    assert member.prefixes.to_status()["reportedHitRate"] == 0.0
    assert balancer.chars_per_token.value < 4.0 + 1e-9


def test_a_told_cache_size_sizes_the_index() -> None:
    balancer = cache_aware_balancer()
    member = balancer.members[0]
    assert member.prefixes.limit == 16384
    assert balancer.tell_cache_size(member, CacheSize(8000, 2, "props"))
    assert member.prefixes.limit == 2000  # 8000 tokens / (16 chars / 4 chars per token)
    assert not balancer.tell_cache_size(member, CacheSize(8000, 2, "props"))


def test_the_spec_cache_size_sizes_new_members() -> None:
    balancer = cache_aware_balancer(cacheTokens=400)
    assert balancer.members[0].prefixes.limit == 100


def test_with_many_hot_families_the_rendezvous_order_weighted_by_size_places() -> None:
    pool = members("big", "small")
    pool[0].prefixes.resize(30000)
    pool[1].prefixes.resize(10000)
    policy = CacheAware(blockChars=16, loadFactor=1.0)
    tenants = range(400)  # far beyond MANY_PER_MEMBER per member
    send(pool, list(tenants), policy)
    share = Counter(places(pool, tenants, policy))["big"] / len(tenants)
    assert 0.68 <= share <= 0.82, f"the big member's share {share:.2f}, its cache's 0.75"


@pytest.mark.parametrize(
    ("proxy", "balancers"),
    [({}, 1), ({"replicas": 3}, 3), ({"replicas": 2, "workers": 4}, 8), ({"replicas": 0}, 1),
     ({"resources": {"limits": {"cpu": "2"}}}, 2)],
)  # fmt: skip
def test_the_processes_balancing_a_pool_are_its_replicas_workers(
    proxy: dict, balancers: int
) -> None:
    spec = parse_pool({
        "metadata": {"name": "p"},
        "spec": {"members": [{"name": "a", "url": "http://198.18.0.1"}], "proxy": proxy},
    }).spec  # fmt: skip
    assert spec.proxy.balancers() == balancers
