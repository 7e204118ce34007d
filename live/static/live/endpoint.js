// One endpoint: settings, health, actions, and its delivery log (filters in the address,
// cursor paging, rows updated live, bulk retry after a count).
import {
  ApiError, api, canWrite, confirmAction, connectLive, fromLocalInput, h, localInput, ms,
  percent, plural, reportError, setConnectionState, toast, when, wireDialogs,
} from "./common.js";
import { endpointAction } from "./endpoint-actions.js";
import { wireEndpointForm } from "./endpoint-form.js";
import { Inspector, rememberEndpoint } from "./inspector.js";

const endpointId = decodeURIComponent(window.location.pathname.split("/").pop());
const PAGE = 50;
const STATUS_BADGE = { succeeded: "badge-ok", failed: "badge-bad", retrying: "badge-warn", pending: "badge-muted", delivering: "badge-info", cancelled: "badge-muted" };

const inspector = new Inspector();
const form = document.getElementById("delivery-filters");
const tbody = document.getElementById("deliveries");
const moreButton = document.getElementById("load-more");
let endpoint = null;
let cursor = null;
let loaded = [];

function filtersFromUrl() {
  const params = new URLSearchParams(window.location.search);
  const filters = {};
  for (const name of ["status", "since", "until"]) if (params.get(name)) filters[name] = params.get(name);
  return filters;
}

function fillForm(filters) {
  const statuses = new Set((filters.status || "").split(",").filter(Boolean));
  for (const box of form.querySelectorAll("input[name=status]")) box.checked = statuses.has(box.value);
  form.elements.since.value = localInput(filters.since);
  form.elements.until.value = localInput(filters.until);
}

function filtersFromForm() {
  const filters = {};
  const statuses = [...form.querySelectorAll("input[name=status]:checked")].map((box) => box.value);
  if (statuses.length) filters.status = statuses.join(",");
  const since = fromLocalInput(form.elements.since.value);
  const until = fromLocalInput(form.elements.until.value);
  if (since) filters.since = since;
  if (until) filters.until = until;
  return filters;
}

function lastAnswer(d) {
  if (d.last_status_code) return `HTTP ${d.last_status_code}`;
  if (d.last_error) return d.last_error;
  return "–";
}

function row(d) {
  return h("tr", { dataset: { delivery: d.id, event: d.event_id, status: d.status } },
    h("td", { "data-label": "Created", class: "nowrap" }, when(d.created_at)),
    h("td", { "data-label": "Status" }, h("span", { class: `badge ${STATUS_BADGE[d.status] || "badge-muted"}` }, d.status)),
    h("td", { "data-label": "Attempts" }, plural(d.attempts_count, "attempt"),
      d.next_attempt_at && ["pending", "retrying"].includes(d.status) ? h("div", { class: "endpoint-desc" }, `next ${when(d.next_attempt_at)}`) : null),
    h("td", { "data-label": "Last answer", class: "mono" }, lastAnswer(d)),
    h("td", { "data-label": "Event" }, h("button", { type: "button", class: "link-button", dataset: { event: d.event_id } }, d.event_id)));
}

function render() {
  tbody.replaceChildren(...loaded.map(row));
  moreButton.hidden = !cursor;
  document.getElementById("deliveries-empty").hidden = loaded.length > 0 || Boolean(cursor);
  document.getElementById("results-note").textContent = `${plural(loaded.length, "delivery", "deliveries")} shown${cursor ? " · more below" : ""}`;
}

async function fetchPage(after, limit = PAGE) {
  const params = new URLSearchParams({ ...filtersFromUrl(), endpoint: endpointId, limit: String(limit) });
  if (after) params.set("cursor", after);
  return api("GET", `/deliveries?${params}`);
}

function showError(error) {
  const slot = document.getElementById("filters-error");
  slot.textContent = error ? error.message : "";
  slot.hidden = !error;
}

async function search(append) {
  try {
    const page = await fetchPage(append ? cursor : null);
    showError(null);
    loaded = append ? loaded.concat(page.data || []) : (page.data || []);
    cursor = page.next_cursor;
    render();
  } catch (error) {
    showError(error);
  }
}

// Live: the first page is read again (statuses change, new deliveries come), the rest kept.
let liveTimer = null;
function refreshSoon() {
  clearTimeout(liveTimer);
  liveTimer = setTimeout(async () => {
    try {
      const page = await fetchPage(null, Math.max(PAGE, Math.min(loaded.length, 250)));
      const fresh = page.data || [];
      const freshIds = new Set(fresh.map((d) => d.id));
      const oldest = fresh.length ? fresh[fresh.length - 1].id : null;
      loaded = fresh.concat(loaded.filter((d) => !freshIds.has(d.id) && oldest && d.id < oldest));
      if (loaded.length === fresh.length) cursor = page.next_cursor;
      render();
      loadEndpoint();
    } catch { /* the next message tries again */ }
  }, 500);
}

function setting(name, value) {
  return [h("dt", {}, name), h("dd", {}, value)];
}

async function loadEndpoint() {
  try {
    endpoint = await api("GET", `/endpoints/${encodeURIComponent(endpointId)}`);
  } catch (error) {
    document.getElementById("endpoint-title").textContent = endpointId;
    const text = error instanceof ApiError && error.status === 404 ? `There is no endpoint ${endpointId} (or it was deleted).` : `Could not load the endpoint: ${error.message}`;
    document.getElementById("endpoint-description").replaceChildren(h("span", { class: "error" }, text));
    for (const id of ["endpoint-actions", "bulk-retry"]) { const node = document.getElementById(id); if (node) node.hidden = true; }
    return;
  }
  rememberEndpoint(endpoint);
  document.title = `${endpoint.url} · Relay`;
  document.getElementById("endpoint-title").textContent = endpoint.url;
  document.getElementById("endpoint-description").textContent = [endpoint.description, endpoint.id].filter(Boolean).join(" · ");
  document.getElementById("endpoint-state").replaceChildren(...[
    h("span", { class: `badge ${endpoint.enabled ? "badge-ok" : "badge-bad"}` }, endpoint.enabled ? "enabled" : "disabled"),
    endpoint.disabled_reason ? h("span", { class: "muted" }, ` ${endpoint.disabled_reason}`) : null].filter(Boolean));
  document.getElementById("endpoint-settings").replaceChildren(
    ...(endpoint.kind ? setting("kind", endpoint.kind) : []),
    ...setting("event types", (endpoint.event_types || []).join(", ") || "all"),
    ...setting("sources", (endpoint.sources || []).join(", ") || "all"),
    ...setting("filter", endpoint.filter ? JSON.stringify(endpoint.filter) : "none"),
    ...setting("headers", Object.keys(endpoint.headers || {}).join(", ") || "none"),
    ...setting("retry schedule", endpoint.retry_schedule ? endpoint.retry_schedule.map((s) => `${s} s`).join(", ") : "server default"),
    ...setting("limits", `timeout ${endpoint.timeout_seconds ?? "default"} s · ${endpoint.max_in_flight} in flight · ${endpoint.rate_limit_per_second ?? "no"} rate limit`));
  const actions = document.getElementById("endpoint-actions");
  if (actions) {
    const button = (action, text, extra = "") => h("button", { type: "button", class: `button-small action ${extra}`, dataset: { action } }, text);
    actions.replaceChildren(
      button("edit", "Edit"),
      endpoint.enabled ? button("disable", "Disable") : button("enable", "Enable"),
      button("test", "Send test"), button("rotate", "Rotate secret"), button("delete", "Delete", "danger-text"));
  }
  try {
    const s = await api("GET", `/endpoints/${encodeURIComponent(endpointId)}/stats`);
    const tile = (label, value) => h("div", { class: "tile" }, h("span", { class: "tile-label" }, label), h("span", { class: "tile-value" }, value));
    document.getElementById("endpoint-health").replaceChildren(
      tile("Success 24 h", s.attempts ? percent(s.success_rate) : "—"),
      tile("Attempts", String(s.attempts)),
      tile("p50 / p95", s.attempts ? `${ms(s.p50_ms)} / ${ms(s.p95_ms)}` : "—"),
      tile("Pending", String(s.pending)),
      tile("Circuit", s.circuit.replace("_", " ")));
  } catch { /* health is optional */ }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const params = new URLSearchParams(filtersFromForm());
  history.pushState(null, "", `${window.location.pathname}${params.toString() ? `?${params}` : ""}`);
  search(false);
});
document.getElementById("filters-reset").addEventListener("click", () => {
  history.pushState(null, "", window.location.pathname);
  fillForm({});
  search(false);
});
window.addEventListener("popstate", () => { fillForm(filtersFromUrl()); search(false); });
moreButton.addEventListener("click", () => search(true));
tbody.addEventListener("click", (event) => {
  const target = event.target.closest("button[data-event]");
  if (target) inspector.open(target.dataset.event, target);
});

if (canWrite) {
  wireDialogs();
  wireEndpointForm(async () => { await loadEndpoint(); });
  document.getElementById("endpoint-actions").addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button || !endpoint) return;
    const after = await endpointAction(button.dataset.action, endpoint, button);
    if (after === null) { window.location.assign("/dashboard/"); return; }
    if (button.dataset.action !== "edit") await loadEndpoint();
  });
  document.getElementById("bulk-retry").addEventListener("click", async () => {
    const filters = filtersFromUrl();
    const body = { endpoint_id: endpointId, statuses: ["failed"] };
    if (filters.since) body.since = filters.since;
    if (filters.until) body.until = filters.until;
    const span = filters.since || filters.until ? " in the chosen time range" : "";
    try {
      const dry = await api("POST", "/deliveries/retry?dry_run=true", body);
      if (!dry.count) { toast(`No failed delivery${span} to retry`); return; }
      if (!(await confirmAction(`Retry ${plural(dry.count, "failed delivery", "failed deliveries")}${span} now?`, "Retry"))) return;
      const answer = await api("POST", "/deliveries/retry", body);
      toast(`Retrying ${plural(answer.count, "delivery", "deliveries")}: watch them below`);
      refreshSoon();
    } catch (error) {
      reportError(error, "Could not retry");
    }
  });
}

connectLive({
  onState: setConnectionState,
  onMessage: (message) => {
    inspector.onLive(message);
    const d = message.delivery;
    if (d && d.endpoint_id === endpointId) refreshSoon();
    if (message.type === "endpoint.disabled" && message.endpoint && message.endpoint.id === endpointId) {
      toast(`This endpoint was disabled: ${message.endpoint.disabled_reason || "no reason given"}`, "error");
      loadEndpoint();
    }
  },
}).subscribe({ endpoints: [endpointId] });

fillForm(filtersFromUrl());
loadEndpoint();
search(false);
inspector.openFromHash();
