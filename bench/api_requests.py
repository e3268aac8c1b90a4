"""The API server's request counters (apiserver_request_total), read from its /metrics.

Two readings subtracted give the requests made in between, by verb and resource; divided by
the pools created, the API cost of one pool.
"""

from __future__ import annotations

import re
from collections import Counter

from kubernetes import client

SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
LABEL = re.compile(r'(\w+)="([^"]*)"')

Key = tuple[str, str]  # (verb, resource[/subresource])


def request_counts(api: client.ApiClient) -> Counter[Key]:
    """Requests served so far, by verb and resource (WATCH and LIST included)."""
    request = api.param_serialize("GET", "/metrics", auth_settings=["BearerToken"])
    response = api.call_api(*request)
    response.read()
    counts: Counter[Key] = Counter()
    for line in response.data.decode().splitlines():
        match = SAMPLE.match(line)
        if match is None:
            continue
        labels = dict(LABEL.findall(match["labels"]))
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        counts[(labels.get("verb", ""), resource)] += round(float(match["value"]))
    return counts


def per_pool(before: Counter[Key], after: Counter[Key], pools: int) -> dict[str, float]:
    """Requests between two readings per pool, as {"VERB resource": n}, most first."""
    delta = after - before
    return {
        f"{verb} {resource}": round(count / pools, 2)
        for (verb, resource), count in delta.most_common()
        if count / pools >= 0.01
    }
