// The fleet overview: every host (/hosts), the alerts (/alerts), the agent's health (/health).

import { ApiError, getJson, hostmon } from "./api.js";
import { age, clock, el, percent } from "./format.js";

function hostRow(h) {
  const now = h.now || {};
  const status = h.status || "ok";
  const fs =
    now.filesystem_used_percent === null || now.filesystem_used_percent === undefined
      ? "–"
      : `${percent(now.filesystem_used_percent)} ${now.filesystem_mount || ""}`.trim();
  const firing = (h.firing || []).join(", ");
  return el(
    "tr",
    { "data-host": h.host, "data-status": status },
    el("th", { scope: "row" }, el("a", { href: `#/host/${encodeURIComponent(h.host)}` }, h.host)),
    el("td", {}, el("span", { class: `status status-${status}`, title: firing || null }, status), firing ? ` ${firing}` : ""),
    el("td", {}, el("time", { datetime: h.last_sample, title: clock(h.last_sample_ms) }, age(h.age_s))),
    el("td", { class: "num" }, percent(now.cpu_usage_overall)),
    el("td", { class: "num" }, percent(now.memory_usage)),
    el("td", { class: "num" }, fs),
  );
}

async function renderHosts() {
  const body = await getJson("hosts");
  const tbody = document.querySelector("#hosts-table tbody");
  const focused = document.activeElement?.closest?.("tr[data-host]")?.dataset.host; // keep Tab's place
  tbody.replaceChildren(...body.hosts.map(hostRow));
  if (focused) [...tbody.rows].find((r) => r.dataset.host === focused)?.querySelector("a")?.focus();
  document.getElementById("hosts-empty").hidden = body.hosts.length > 0;
  hostmon.overview = { hosts: body.hosts.map((h) => ({ host: h.host, status: h.status })) };
}

function eventItem(e, firing) {
  const where = [e.host, ...Object.entries(e.tags || {}).map(([k, v]) => `${k}=${v}`)].join(" ");
  const state = firing ? "fire" : e.state;
  const when = firing ? e.since : e.time;
  return el(
    "li",
    { "data-rule": e.rule, "data-state": state },
    el("span", { class: state }, firing ? "firing" : state),
    ` ${e.rule} on ${where} `,
    el("time", { datetime: when }, firing ? `since ${clock(e.since_ms)}` : clock(e.time_ms)),
    e.message ? el("div", { class: "muted" }, e.message) : null,
  );
}

async function renderAlerts() {
  const firing = document.getElementById("alerts-firing");
  const history = document.getElementById("alerts-history");
  let body;
  try {
    body = await getJson("alerts?limit=50");
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
    firing.replaceChildren(el("li", { class: "muted" }, "This API has no /alerts endpoint."));
    history.replaceChildren();
    return;
  }
  const none = (text) => el("li", { class: "muted" }, text);
  firing.replaceChildren(...(body.firing.length ? body.firing.map((e) => eventItem(e, true)) : [none("Nothing is firing.")]));
  history.replaceChildren(...(body.history.length ? body.history.map((e) => eventItem(e, false)) : [none("No alerts yet.")]));
}

function term(list, name, value) {
  list.append(el("dt", {}, name), el("dd", {}, value));
}

async function renderHealth() {
  const body = await getJson("health", { accept: [200, 503] });
  const list = document.getElementById("health-list");
  list.replaceChildren();
  term(list, "Status", el("span", { class: `status status-${body.status === "ok" ? "ok" : "silent"}` }, body.status));
  for (const problem of body.problems) term(list, "Problem", problem);
  const store = body.store;
  term(list, "Store", `${store.kind}: ${store.reachable ? "reachable" : "unreachable"} ${store.detail || ""}`.trim());
  const agent = body.agent;
  if (!agent) {
    term(list, "Agent", "no agent spool beside this API");
    return;
  }
  term(list, "Spool depth", `${agent.spool_depth} samples waiting`);
  term(list, "Last write", agent.last_success ? `${clock(Date.parse(agent.last_success))} (${age(agent.last_success_age_s)})` : "never");
  term(list, "Dropped", String(agent.dropped_total));
  term(list, "Heartbeat", age(agent.heartbeat_age_s));
  if (agent.last_error) term(list, "Last error", agent.last_error);
}

export async function renderOverview() {
  await Promise.all([renderHosts(), renderAlerts(), renderHealth()]);
}
