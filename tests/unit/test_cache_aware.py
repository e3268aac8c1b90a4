"""cacheAware over plain data: prompt text, block hashes, the bounded index, the picking."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from servicepool_api.llm_policies import CacheAware
from servicepool_api.loader import parse_pool
from servicepool_api.policies import Capacity
from servicepool_api.prompts import prompt_text
from servicepool_api.spec import PoolSpec, Strategy
from servicepool_proxy.balancer.cache_aware import (
    family_place,
    pick_cache_aware,
    preference_order,
)
from servicepool_proxy.balancer.keys import RoutingKeys
from servicepool_proxy.balancer.member import MemberState
from servicepool_proxy.balancer.pickers import make_picker
from servicepool_proxy.balancer.placement import Placement
from servicepool_proxy.balancer.pool import Balancer
from servicepool_proxy.balancer.prefix import PrefixBlocks, block_hashes
from servicepool_proxy.balancer.scores import strategy_scores
from servicepool_proxy.forwarding.routing_keys import body_limit, needs_json_body, routing_keys

POLICY = CacheAware(blockChars=16)


def members(*names: str) -> list[MemberState]:
    return [MemberState(name=n, url=f"http://198.18.0.{i + 1}") for i, n in enumerate(names)]


def prompt(tenant: str, turn: int = 0) -> tuple[int, ...]:
    """A tenant's long system prompt plus `turn` more blocks of conversation."""
    text = f"tenant {tenant}: system prompt ".ljust(160, ".") + "user says hi.   " * turn
    return block_hashes(text, 16)


def place_first(pool: list[MemberState], tenant: str = "t") -> list[MemberState]:
    """The pool with the tenant's place first (where its family belongs), the rest after."""
    place = family_place(pool, prompt(tenant)[0], 0.0, POLICY)
    return [place] + [m for m in pool if m is not place]


# --- prompt text ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"prompt": "hello"}, "hello"),
        ({"prompt": ""}, None),
        ({"prompt": ["a", "b"]}, "a\x1eb"),
        ({"prompt": [1, 2, 3]}, "[1,2,3]"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "user\x1fhi\x1e"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
            "user\x1fhi\x1e",
        ),
        ({"model": "m"}, None),
        ("not an object", None),
        ({"messages": []}, None),
    ],
)
def test_the_prompt_of_an_openai_body_is_its_canonical_text(document, expected) -> None:
    assert prompt_text(document) == expected


def test_a_later_turn_of_a_chat_starts_with_the_earlier_turns_text() -> None:
    first = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    later = [*first, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "?"}]
    assert prompt_text({"messages": later}).startswith(prompt_text({"messages": first}))


# --- block hashes -----------------------------------------------------------------------


def test_block_hashes_are_chained_so_one_hash_names_a_whole_prefix() -> None:
    a = block_hashes("x" * 32 + "A" * 16, 16)
    b = block_hashes("y" * 16 + "x" * 16 + "A" * 16, 16)
    assert len(a) == 3 and len(b) == 3
    assert a[2] != b[2]  # same third block, different prefix
    assert block_hashes("x" * 32 + "B" * 16, 16)[:2] == a[:2]


def test_a_partial_last_block_is_ignored_but_a_short_prompt_is_one_block() -> None:
    assert block_hashes("x" * 40, 16) == block_hashes("x" * 32, 16)
    assert len(block_hashes("short", 16)) == 1
    assert block_hashes("", 16) == ()


# --- the bounded index ------------------------------------------------------------------


def test_the_index_finds_the_longest_recently_sent_prefix() -> None:
    index = PrefixBlocks(limit=1000)
    index.record(prompt("t", 2))
    assert index.matched(prompt("t", 2)) == len(prompt("t", 2))
    assert index.matched(prompt("t", 5)) == len(prompt("t", 2))
    assert index.matched(prompt("u", 2)) == 0


@pytest.mark.parametrize("limit", [1, 7, 10, 50])
def test_the_index_never_exceeds_its_configured_size(limit: int) -> None:
    index = PrefixBlocks(limit)
    for tenant in range(40):
        for turn in range(4):
            index.record(prompt(str(tenant), turn))
            assert len(index) <= limit


def test_eviction_forgets_the_deepest_blocks_first_so_matches_stay_prefixes() -> None:
    index = PrefixBlocks(limit=12)
    long = prompt("t", 6)  # 10 + 6 blocks
    index.record(long)
    assert len(index) == 12
    assert index.matched(long) == 12  # the first 12 blocks are kept, not the last 12


def test_the_index_counts_lookups_hits_and_matched_blocks() -> None:
    index = PrefixBlocks()
    assert index.record(prompt("t")) == 0
    assert index.record(prompt("t", 1)) == 10
    status = index.to_status()
    assert status["lookups"] == 2 and status["hits"] == 1
    assert status["blocksSent"] == 21 and status["blocksMatched"] == 10
    assert status["hitRate"] == round(10 / 21, 4)


# --- picking ----------------------------------------------------------------------------


def test_a_prompt_goes_where_its_prefix_was_sent() -> None:
    pool = place_first(members("a", "b", "c"))
    pool[0].prefixes.record(prompt("t"))
    for turn in range(3):
        assert pick_cache_aware(pool, prompt("t", turn), 0.0, POLICY) is pool[0]


def test_a_conversation_moved_off_its_place_stays_where_it_went() -> None:
    # The place holds the family's system prompt; another member was sent the longer
    # conversation (the place was busy): the conversation belongs there too.
    pool = place_first(members("a", "b", "c"))
    pool[0].prefixes.record(prompt("t"))
    pool[2].prefixes.record(prompt("t", 3))
    assert pick_cache_aware(pool, prompt("t", 4), 0.0, POLICY) is pool[2]


@pytest.mark.parametrize(("shared", "goes_to_place"), [(True, True), (False, False)])
def test_with_other_replicas_the_place_is_taken_to_hold_what_they_sent_it(
    shared: bool, goes_to_place: bool
) -> None:
    # This replica sent the family elsewhere (before the place took it), never to the
    # place: with other replicas the place may hold it from them, and it goes there; alone,
    # this replica's index is the truth, and it stays where it is held.
    pool = place_first(members("a", "b", "c"))
    pool[1].prefixes.record(prompt("t"))
    picked = pick_cache_aware(pool, prompt("t", 1), 0.0, POLICY, placement=Placement(shared))
    assert (picked is pool[0]) is goes_to_place


def test_the_longest_match_wins() -> None:
    pool = members("a", "b")
    pool[0].prefixes.record(prompt("t", 0))
    pool[1].prefixes.record(prompt("t", 3))
    assert pick_cache_aware(pool, prompt("t", 4), 0.0, POLICY) is pool[1]


# POLICY: 16-char blocks, 4 tokens each. prompt("t") is 10 blocks, each turn one more.
# The holder of prompt("t") would prefill 1 block of prompt("t", 1); any other member 11,
# counted twice (movePenalty 1) because the prompt does not belong there.
FLAT = CacheAware(blockChars=16, requestCostTokens=0)


@pytest.mark.parametrize(
    ("holder_pending", "others_pending", "stays"),
    [
        (0, 0, True),
        (20, 0, True),  # 21 blocks of work there vs 22 elsewhere
        (22, 0, False),  # 23 vs 22: the queued work outweighs computing it again
        (30, 10, True),  # 31 vs 32
        (40, 10, False),  # 41 vs 32
    ],
)
def test_prefix_stickiness_holds_until_the_load_bound(
    holder_pending: int, others_pending: int, stays: bool
) -> None:
    pool = members("a", "b", "c")
    holder = pool[1]
    holder.prefixes.record(prompt("t"))
    for member in pool:
        member.prefill_blocks = holder_pending if member is holder else others_pending
    chosen = pick_cache_aware(pool, prompt("t", 1), 0.0, FLAT)
    assert (chosen is holder) is stays


@pytest.mark.parametrize(("penalty", "stays"), [(0.0, False), (1.0, True), (3.0, True)])
def test_the_move_penalty_sets_how_much_queued_work_moves_a_prefix(
    penalty: float, stays: bool
) -> None:
    pool = place_first(members("a", "b"))
    pool[0].prefixes.record(prompt("t"))
    pool[0].prefill_blocks = 11  # 12 blocks there vs 11 x (1 + penalty) elsewhere
    policy = CacheAware(blockChars=16, requestCostTokens=0, movePenalty=penalty)
    assert (pick_cache_aware(pool, prompt("t", 1), 0.0, policy) is pool[0]) is stays


@pytest.mark.parametrize(("holder_in_flight", "stays"), [(5, True), (6, False)])
def test_each_request_in_flight_counts_as_request_cost_tokens(
    holder_in_flight: int, stays: bool
) -> None:
    pool = place_first(members("a", "b"))
    pool[0].prefixes.record(prompt("t"))
    pool[0].in_flight = holder_in_flight  # 4 + 16 x in-flight tokens vs 22 x 4 = 88
    policy = CacheAware(blockChars=16, requestCostTokens=16)
    assert (pick_cache_aware(pool, prompt("t", 1), 0.0, policy) is pool[0]) is stays


def test_with_a_fresh_capacity_report_the_waiting_queue_counts() -> None:
    pool = place_first(members("a", "b"))
    pool[0].prefixes.record(prompt("t"))
    policy = CacheAware(blockChars=16, requestCostTokens=0, queuedCostTokens=50)
    capacity = Capacity()
    pool[0].record_report(now=10.0, queued=2, running=4, workers=None, cache_usage=None)
    pool[1].record_report(now=10.0, queued=0, running=1, workers=None, cache_usage=None)
    # 4 + 2 x 50 tokens on the holder vs 88 on the other member.
    assert pick_cache_aware(pool, prompt("t", 1), 10.5, policy, capacity) is pool[1]
    # Without the capacity signal, or with a stale report, the queue is not known.
    assert pick_cache_aware(pool, prompt("t", 1), 10.5, policy) is pool[0]
    assert pick_cache_aware(pool, prompt("t", 1), 99.0, policy, capacity) is pool[0]


def test_a_member_whose_cache_is_full_keeps_its_prefixes() -> None:
    # A full KV cache is an engine's normal state, not a reason to leave the prefix's member.
    pool = place_first(members("a", "b"))
    pool[0].prefixes.record(prompt("t"))
    pool[0].record_report(now=10.0, queued=0, running=1, workers=None, cache_usage=0.99)
    assert pick_cache_aware(pool, prompt("t", 1), 10.5, POLICY, Capacity()) is pool[0]


def test_a_new_prompt_leaves_a_crowded_home_at_once_but_a_cached_one_stays() -> None:
    pool = members("a", "b", "c")
    fresh = prompt("fresh")  # 10 blocks nobody was sent
    home = preference_order(pool, fresh, 0.0, FLAT)[0]
    assert pick_cache_aware(pool, fresh, 0.0, FLAT) is home  # idle: the home
    home.prefill_blocks = 11  # 21 blocks of work at home vs 20 elsewhere
    assert pick_cache_aware(pool, fresh, 0.0, FLAT) is not home
    home.prefixes.record(fresh)  # the same queue, but the prompt is cached there
    assert pick_cache_aware(pool, fresh, 0.0, FLAT) is home


def test_a_short_match_pulls_a_prompt_only_while_it_saves_work() -> None:
    pool = members("a", "b", "c", "d")
    unseen = prompt("fresh", 30)  # 40 blocks
    home = preference_order(pool, unseen, 0.0, FLAT)[0]
    other = next(m for m in pool if m is not home)
    other.prefixes.record(unseen[:2])  # the prompt now belongs where 2 blocks are
    assert pick_cache_aware(pool, unseen, 0.0, FLAT) is other
    other.prefill_blocks = 39  # 77 blocks of work there vs 80 at the home
    assert pick_cache_aware(pool, unseen, 0.0, FLAT) is other
    other.prefill_blocks = 45  # 83 vs 80
    assert pick_cache_aware(pool, unseen, 0.0, FLAT) is home


def test_with_replicas_a_longer_match_pulls_a_prompt_off_its_place_while_it_saves_work() -> None:
    shared = Placement(shared=True)
    pool = members("a", "b", "c", "d")
    unseen = prompt("fresh", 30)  # 40 blocks
    home = preference_order(pool, unseen, 0.0, FLAT, placement=shared)[0]
    other = next(m for m in pool if m is not home)
    home.prefixes.record(unseen[:2])
    other.prefixes.record(unseen[:20])  # the prompt belongs where 20 blocks are, too
    assert pick_cache_aware(pool, unseen, 0.0, FLAT, placement=shared) is other
    other.prefill_blocks = 17  # 37 blocks of work there vs 38 at the home
    assert pick_cache_aware(pool, unseen, 0.0, FLAT, placement=shared) is other
    other.prefill_blocks = 19  # 39 vs 38
    assert pick_cache_aware(pool, unseen, 0.0, FLAT, placement=shared) is home


def test_two_replicas_send_an_unseen_prefix_to_the_same_member() -> None:
    # Two pickers with no shared state, members listed in different orders.
    one = members("a", "b", "c", "d", "e")
    two = list(reversed(members("a", "b", "c", "d", "e")))
    pick_one = make_picker(Strategy.CACHE_AWARE, random.Random(1))
    pick_two = make_picker(Strategy.CACHE_AWARE, random.Random(2))
    homes = set()
    for tenant in range(50):
        keys = RoutingKeys(prefix=block_hashes(f"tenant {tenant} ".ljust(400, "."), 128))
        first, second = pick_one(one, 0.0, keys), pick_two(two, 0.0, keys)
        assert first.name == second.name
        homes.add(first.name)
    assert homes == {"a", "b", "c", "d", "e"}  # and the homes spread over the pool


def test_a_prefix_keeps_its_home_when_another_member_leaves() -> None:
    pool = members("a", "b", "c", "d", "e")
    moved = 0
    for tenant in range(200):
        key = prompt(str(tenant))
        home = pick_cache_aware(pool, key, 0.0, POLICY)
        if home.name == "e":
            continue
        moved += pick_cache_aware(pool[:4], key, 0.0, POLICY) is not home
    assert moved == 0


def test_without_a_prompt_cache_aware_is_least_in_flight() -> None:
    pool = members("a", "b", "c")
    pool[0].in_flight, pool[1].in_flight, pool[2].in_flight = 3, 1, 2
    assert pick_cache_aware(pool, (), 0.0, POLICY) is pool[1]


# --- the balancer records what was sent where --------------------------------------------


def cache_aware_spec(**fields: object) -> PoolSpec:
    return PoolSpec.model_validate({
        "strategy": "cacheAware",
        "members": [{"name": n, "url": f"http://198.18.0.{i + 1}"} for i, n in enumerate("abc")],
        **fields,
    })  # fmt: skip


def test_only_a_member_a_try_was_sent_to_learns_the_prefix_and_retries_teach_both() -> None:
    balancer = Balancer(cache_aware_spec(cacheAware={"blockChars": 16}))
    keys = RoutingKeys(prefix=prompt("t"))
    first = balancer.choose(0.0, (), keys)
    assert isinstance(first, MemberState)
    assert all(len(m.prefixes) == 0 for m in balancer.members)  # choosing records nothing
    balancer.acquire(first, 0.0, keys)
    retried = balancer.choose(0.0, [first], keys)
    assert isinstance(retried, MemberState) and retried is not first
    balancer.acquire(retried, 0.0, keys)
    learned = {m.name for m in balancer.members if len(m.prefixes)}
    assert learned == {first.name, retried.name}


def test_a_try_counts_the_blocks_its_member_was_not_sent_as_pending_prefill_until_done() -> None:
    balancer = Balancer(cache_aware_spec(cacheAware={"blockChars": 16}))
    member = balancer.members[0]
    first = balancer.begin(member, 0.0, RoutingKeys(prefix=prompt("t")))
    second = balancer.begin(member, 0.0, RoutingKeys(prefix=prompt("t", 2)))
    assert (first.prefill.blocks, second.prefill.blocks) == (10, 2)
    assert (member.prefill_blocks, member.prefilling, member.in_flight) == (12, 2, 2)
    assert first.prefill.done() is True  # its first token
    assert first.prefill.done() is False  # and the end of the try: counted once
    assert (member.prefill_blocks, member.prefilling) == (2, 1)
    second.prefill.done()
    assert (member.prefill_blocks, member.prefilling) == (0, 0)


def test_a_smaller_bound_from_a_reload_trims_every_index() -> None:
    balancer = Balancer(cache_aware_spec(cacheAware={"blockChars": 16}))
    member = balancer.members[0]
    member.prefixes.record(prompt("t", 10))
    balancer.apply(cache_aware_spec(cacheAware={"blockChars": 16, "maxBlocksPerMember": 4}))
    assert len(member.prefixes) == 4


# --- the spec and the request body -------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"blockChars": 4}, "cacheAware.blockChars"),
        ({"maxBlocksPerMember": 0}, "cacheAware.maxBlocksPerMember"),
        ({"movePenalty": -1}, "cacheAware.movePenalty"),
        ({"requestCostTokens": -1}, "cacheAware.requestCostTokens"),
        ({"queuedCostTokens": "many"}, "cacheAware.queuedCostTokens"),
        ({"balanceAbsThreshold": 8}, "cacheAware.balanceAbsThreshold"),  # gone
        ({"bogus": 1}, "cacheAware.bogus"),
    ],
)
def test_a_bad_cache_aware_setting_is_an_error_naming_the_field(fields, named) -> None:
    with pytest.raises((ValidationError, ValueError)) as caught:
        parse_pool({"apiVersion": "servicepool.dev/v1alpha1", "kind": "ServicePool",
                    "spec": {"strategy": "cacheAware", "cacheAware": fields}})  # fmt: skip
    assert named in str(caught.value)


def test_cache_aware_reads_json_bodies_up_to_its_limit() -> None:
    spec = cache_aware_spec(cacheAware={"maxBodyBytes": 32 << 20}, retries={"bufferBytes": 1 << 20})
    assert body_limit(spec) == 32 << 20
    assert needs_json_body(spec, "application/json")
    assert not needs_json_body(spec, "text/plain")
    assert not needs_json_body(cache_aware_spec(strategy="leastInFlight"), "application/json")


def test_routing_keys_carry_the_prompt_prefix_with_the_model_in_front() -> None:
    spec = cache_aware_spec(cacheAware={"blockChars": 16})
    body = b'{"model": "m1", "messages": [{"role": "user", "content": "' + b"x" * 64 + b'"}]}'
    keys = routing_keys(spec, {}, body)
    assert keys.prefix == block_hashes("m1\x00user\x1f" + "x" * 64 + "\x1e", 16)
    other_model = routing_keys(spec, {}, body.replace(b'"m1"', b'"m2"'))
    assert other_model.prefix[0] != keys.prefix[0]
    assert routing_keys(spec, {}, b"not json").prefix == ()
    assert routing_keys(cache_aware_spec(strategy="leastInFlight"), {}, body).prefix == ()


def test_the_explained_scores_are_the_costs_the_pick_minimises() -> None:
    pool = members("a", "b", "c")
    pool[1].prefixes.record(prompt("t", 2))
    pool[0].in_flight = 3
    spec = PoolSpec(strategy=Strategy.CACHE_AWARE, cacheAware=POLICY)
    scores = strategy_scores(spec, pool, 0.0, RoutingKeys(prefix=prompt("t", 3)))
    assert scores is not None and set(scores) == {"a", "b", "c"}
    picked = pick_cache_aware(pool, prompt("t", 3), 0.0, POLICY)
    assert picked is pool[1] and scores["b"] == min(scores.values())
    assert strategy_scores(spec, pool, 0.0, RoutingKeys()) is None  # no prompt, no costs
