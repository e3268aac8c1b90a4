"""The live pool page: one HTML document with its CSS and script inline (nothing fetched
from anywhere else); it renders the snapshots of /events with textContent only."""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>servicepool</title>
<style>
:root { --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --dim: #57606a; --line: #d0d7de; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1f2328; }
h1 { font-size: 1.3rem; margin: 0 0 .3rem; }
h2 { font-size: 1rem; margin: 1.4rem 0 .4rem; }
.meta { color: var(--dim); }
.meta b { color: #1f2328; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid var(--line); padding: .3rem .5rem; text-align: right;
         vertical-align: top; white-space: nowrap; }
th { font-weight: 600; background: #f6f8fa; }
td.name, td.why, th.name, th.why, td.text { text-align: left; }
td.why { white-space: normal; color: var(--dim); max-width: 28rem; }
.state { font-weight: 600; border-radius: 1rem; padding: .05rem .55rem; color: #fff;
         background: var(--dim); }
.state.Healthy { background: var(--ok); }
.state.Unhealthy, .state.Ejected, .state.AuthFailed { background: var(--bad); }
.state.RateLimited, .state.HalfOpen { background: var(--warn); }
#status.down { color: var(--bad); }
.none { color: var(--dim); }
</style>
</head>
<body>
<h1>Pool <span id="pool">…</span></h1>
<div class="meta">strategy <b id="strategy">…</b> · routable <b id="routable">…</b>
 · waiting <b id="waiting">…</b> · config #<b id="generation">…</b>
 · <span id="status">connecting…</span></div>
<h2>Members</h2>
<table>
<thead><tr><th class="name">member</th><th>state</th><th class="why">why</th>
<th>in flight</th><th>req/s</th><th>errors</th><th>latency p50 / p99 ms</th>
<th>TTFT p50 / p99 ms</th><th>decode tokens/s</th><th>prefix hits</th><th>capacity</th></tr></thead>
<tbody id="members"></tbody>
</table>
<h2>Last routing decisions</h2>
<table>
<thead><tr><th class="name">time</th><th class="name">try</th><th class="name">pick</th>
<th class="name">model</th><th class="why">candidates · skipped · scores</th></tr></thead>
<tbody id="decisions"></tbody>
</table>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined ? "-" : String(text);
  if (cls) td.className = cls;
  return td;
}
function pair(q) { return q ? q.p50.toFixed(1) + " / " + q.p99.toFixed(1) : null; }
function capacity(c) {
  if (!c) return null;
  if (c.error && c.queued === undefined) return "error: " + c.error;
  let text = "queued " + c.queued + ", running " + c.running;
  if (c.workers !== null && c.workers !== undefined) text += " of " + c.workers;
  if (c.cacheUsage !== null && c.cacheUsage !== undefined)
    text += ", cache " + Math.round(c.cacheUsage * 100) + "%";
  return text;
}
function members(list) {
  const body = $("members");
  body.textContent = "";
  for (const m of list) {
    const row = body.insertRow();
    row.dataset.member = m.name;
    cell(row, m.name, "name").title = m.url;
    const state = document.createElement("span");
    state.className = "state " + m.state;
    state.textContent = m.state;
    row.insertCell().appendChild(state);
    cell(row, m.why || m.lastError || "", "why");
    cell(row, m.maxInFlight ? m.inFlight + " / " + m.maxInFlight : m.inFlight);
    cell(row, m.requestsPerSecond.toFixed(1));
    cell(row, m.errors + (m.errorsPerSecond ? " (" + m.errorsPerSecond.toFixed(1) + "/s)" : ""));
    cell(row, pair(m.latencyMs));
    cell(row, pair(m.ttftMs));
    cell(row, m.tokensPerSecond);
    const pct = (rate) => rate === null ? "-" : Math.round(rate * 100) + "%";
    cell(row, m.prefixHitRate === null ? null : pct(m.prefixHitRate) + " (engine " +
         pct(m.prefixReportedHitRate) + "), " + m.prefixesHeld + " prefixes held");
    cell(row, capacity(m.capacity), "text");
  }
}
function decisions(list, explain) {
  const body = $("decisions");
  body.textContent = "";
  for (const d of list) {
    const row = body.insertRow();
    cell(row, new Date(d.at * 1000).toLocaleTimeString(), "text");
    cell(row, d.attempt, "text");
    cell(row, d.pick || "none", "text");
    cell(row, d.model, "text");
    let why = d.detail || "";
    if (d.candidates) {
      why = "candidates " + (d.candidates.join(", ") || "none");
      if (d.skipped.length)
        why += " · skipped " + d.skipped.map((s) => s.member + " (" + s.reason + ")").join(", ");
      if (d.scores)
        why += " · scores " + Object.entries(d.scores)
          .map(([k, v]) => k + " " + v.toFixed(3)).join(", ");
    } else if (!explain && !why) {
      why = "start the proxy with --explain for the reasons";
    }
    cell(row, why, "why");
  }
}
function show(s) {
  $("pool").textContent = s.pool;
  $("strategy").textContent = s.strategy;
  $("routable").textContent = s.routableMembers + " of " + s.totalMembers;
  $("waiting").textContent = s.queue.waiting + " (max " + s.queue.maxWaiting + ")";
  $("generation").textContent = s.generation;
  members(s.members);
  decisions(s.decisions, s.explain);
}
const source = new EventSource("events");
source.onmessage = (event) => {
  show(JSON.parse(event.data));
  $("status").textContent = "live · " + new Date().toLocaleTimeString();
  $("status").className = "";
};
source.onerror = () => { $("status").textContent = "disconnected, retrying…";
                         $("status").className = "down"; };
</script>
</body>
</html>
"""
