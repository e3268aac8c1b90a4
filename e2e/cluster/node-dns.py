"""Service names for the node's pods: every second, write the cluster's Services (headless
ones as their endpoints) as a hosts file for dnsmasq, and make dnsmasq reread it on a change.

usage: node-dns.py API_SERVER CA_FILE TOKEN_FILE HOSTS_FILE DNSMASQ_PID
"""

import json
import os
import signal
import ssl
import sys
import time
import urllib.request

server, ca_file, token_file, hosts_file, dnsmasq_pid = sys.argv[1:]
context = ssl.create_default_context(cafile=ca_file)
with open(token_file) as f:
    headers = {"Authorization": f"Bearer {f.read().strip()}"}


def items(path):
    request = urllib.request.Request(server + path, headers=headers)
    with urllib.request.urlopen(request, context=context, timeout=5) as response:
        return json.load(response)["items"]


def fqdn(obj):
    return f"{obj['metadata']['name']}.{obj['metadata']['namespace']}.svc.cluster.local"


def records():
    headless = set()
    for service in items("/api/v1/services"):
        ip = service["spec"].get("clusterIP")
        if ip == "None":
            headless.add(fqdn(service))
        elif ip:
            yield f"{ip} {fqdn(service)}"
    if headless:
        for endpoints in items("/api/v1/endpoints"):
            if fqdn(endpoints) in headless:
                for subset in endpoints.get("subsets") or []:
                    for address in subset.get("addresses") or []:
                        yield f"{address['ip']} {fqdn(endpoints)}"


written = None
while True:
    try:
        text = "".join(sorted(f"{line}\n" for line in records()))
    except (OSError, ValueError) as error:  # the API server restarting: keep the last answer
        print(f"node-dns: {error}", file=sys.stderr, flush=True)
        text = written
    if text != written:
        with open(hosts_file + ".tmp", "w") as f:
            f.write(text)
        os.replace(hosts_file + ".tmp", hosts_file)
        os.kill(int(dnsmasq_pid), signal.SIGHUP)
        written = text
    time.sleep(1)
