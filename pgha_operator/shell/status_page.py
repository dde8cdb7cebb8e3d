"""`GET /` of `run --listen`: one static, read-only HTML page whose script polls `/status`.

The page carries no data of its own: every value comes from `/status` and is inserted as
text (textContent, never innerHTML), so a name or a decision cannot become markup. The
Content-Security-Policy allows only this script and style (by hash) and requests to the
same origin.
"""

from __future__ import annotations

import base64
import hashlib

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1em 2em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.15em; margin-top: 1.5em; }
h3 { font-size: 1em; margin: 1em 0 .3em; }
table { border-collapse: collapse; margin-bottom: .5em; }
th, td { text-align: left; padding: 2px 10px 2px 0; border-bottom: 1px solid #ddd; }
.phase { padding: 1px 8px; border-radius: 4px; background: #eee; }
.phase.Converged { background: #c8f0c8; } .phase.Degraded, .phase.Failed { background: #f6c6c6; }
.phase.Progressing { background: #f8e8b0; }
.bad { color: #a00; font-weight: bold; } .muted { color: #777; }
#error { color: #a00; }
"""

SCRIPT = r"""
"use strict";
const POLL_MS = 2000;

// el("td", {class: "x"}, "text", childNode): data goes in as text nodes only.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) node.setAttribute(k, String(v));
  }
  for (const c of children) {
    node.append(c instanceof Node ? c : document.createTextNode(c === null || c === undefined ? "-" : String(c)));
  }
  return node;
}

function table(headers, rows) {
  return el("table", {},
    el("thead", {}, el("tr", {}, ...headers.map(h => el("th", {}, h)))),
    el("tbody", {}, ...rows));
}

function row(attrs, ...cells) {
  return el("tr", attrs, ...cells.map(c => c instanceof Node ? c : el("td", {}, c)));
}

// /status answers one cluster today; a list or {clusters: ...} works too.
function clustersOf(data) {
  if (Array.isArray(data)) return data;
  if (data && data.clusters) return Array.isArray(data.clusters) ? data.clusters : Object.values(data.clusters);
  return [data];
}

function renderCluster(st) {
  const members = (st.postgres && st.postgres.members) || [];
  const primary = members.filter(m => m.role === "primary" || m.role === "leader").map(m => m.name);
  const section = el("section", {"data-cluster": st.cluster},
    el("h2", {}, "cluster ", el("span", {class: "name"}, st.cluster), " ",
       el("span", {class: "phase " + String(st.phase), "data-phase": st.phase}, st.phase)),
    el("p", {}, "primary: ", el("strong", {class: "primary"}, primary.length ? primary.join(", ") : "none"),
       " · last decision: ", el("span", {class: "decision"}, st.lastDecision),
       " · updated ", el("span", {class: "muted"}, st.updatedAt)));
  if (st.manifestError) section.append(el("p", {class: "bad"}, "manifest refused (the last good one stays in force): ", st.manifestError));
  if (st.stateError) section.append(el("p", {class: "bad"}, "state: ", st.stateError));
  section.append(el("h3", {}, "conditions"), table(["type", "status", "reason"],
    (st.conditions || []).map(c => row({"data-condition": c.type},
      c.type, el("td", {class: c.status === "True" ? "" : "bad"}, c.status), c.reason))));
  section.append(el("h3", {}, "machines"), table(["name", "address", "roles", "exists", "services"],
    (st.machines || []).map(m => row({"data-machine": m.name}, m.name, m.address, (m.roles || []).join(", "),
      m.exists ? "yes" : "no",
      Object.entries(m.services || {}).map(([k, v]) => k + " " + v).join(", ")))));
  const etcd = st.etcd || {};
  section.append(el("h3", {}, "etcd members", etcd.reachable === false ? " (unreachable)" : ""),
    table(["name", "address", "member", "health", "learner"],
      (etcd.members || []).map(m => row({"data-etcd": m.name}, m.name, m.address, m.member ? "yes" : "no",
        el("td", {class: m.healthy ? "" : "bad"}, m.healthy ? "healthy" : "unhealthy"),
        m.isLearner ? "learner" : ""))));
  section.append(el("h3", {}, "Patroni members"),
    table(["name", "address", "role", "state", "timeline", "lag", "pending restart"],
      members.map(m => row({"data-member": m.name, "data-role": m.role},
        m.name, m.address, el("td", {class: "role"}, m.role), m.state, m.timeline,
        m.lagBytes === null || m.lagBytes === undefined ? "-" : m.lagBytes + " B",
        m.pendingRestart ? "yes" : ""))));
  const lbs = Array.isArray(st.loadBalancer) ? st.loadBalancer : (st.loadBalancer ? [st.loadBalancer] : []);
  for (const lb of lbs) {
    const p = lb.ports || {};
    section.append(el("h3", {}, "HAProxy ", lb.machine, " ", lb.address,
        " (primary :", p.primary, ", replicas :", p.replicas, ", stats :", p.stats, ")",
        lb.reachable ? "" : " unreachable"),
      table(["backend", "server", "status"],
        (lb.backends || []).map(b => row({"data-backend": b.backend + "/" + b.name}, b.backend, b.name, b.status))));
  }
  const f = st.fencing || {};
  section.append(el("h3", {}, "fencer"), table(["mode", "available", "watching", "last decision", "note"],
    [row({class: "fencing"}, f.mode, f.available ? "yes" : "no", f.watching, f.lastDecision, f.note)]));
  const events = (st.events || []).slice().reverse();
  section.append(el("h3", {}, "last events"), table(["time", "event"],
    events.map(e => row({}, e.time, e.message))));
  return section;
}

async function poll() {
  const error = document.getElementById("error");
  try {
    const resp = await fetch("status", {cache: "no-store", credentials: "same-origin"});
    if (!resp.ok) {
      const body = await resp.json().catch(() => ({}));
      throw new Error("GET /status: HTTP " + resp.status + (body.error ? " " + body.error : ""));
    }
    const data = await resp.json();
    document.getElementById("clusters").replaceChildren(...clustersOf(data).map(renderCluster));
    error.textContent = "";
    document.getElementById("polled").textContent = new Date().toLocaleTimeString();
  } catch (e) {
    error.textContent = String(e.message || e);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}
poll();
"""


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; script-src {_csp_hash(SCRIPT)}; style-src {_csp_hash(STYLE)}; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pgha-operator status</title>
<style>{STYLE}</style>
</head>
<body>
<h1>pgha-operator</h1>
<p class="muted">read-only; refreshed every 2 s from <a href="status">/status</a>
(last poll <span id="polled">never</span>) <span id="error"></span></p>
<main id="clusters"></main>
<script>{SCRIPT}</script>
</body>
</html>
"""
