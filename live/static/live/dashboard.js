// The live page: tiles over the last minute, the live feed, history charts, endpoint health.
import {
  ApiError, api, bytes, canWrite, clock, connectLive, h, ms, percent, plural,
  setConnectionState, splitList, toast, wireDialogs,
} from "./common.js";
import { LineChart, RANGES, loadSeries } from "./charts.js";
import { endpointAction } from "./endpoint-actions.js";
import { openEndpointForm, wireEndpointForm } from "./endpoint-form.js";
import { Inspector, endpointLabel, rememberEndpoint } from "./inspector.js";

const FEED_ROWS = 200;
const FEED_INTERVAL_MS = 100;
const TILE_WINDOW_S = 60;
const ENDPOINT_REFRESH_MS = 10000;
const ENDPOINT_LIVE_REFRESH_MS = 3000;
const ENDPOINTS_PER_PAGE = 5;
const SERIES_REFRESH_MS = 60000;

const DELIVERY_TYPES = new Set(["delivery.attempted", "delivery.succeeded", "delivery.failed"]);
const inspector = new Inspector();

// --- tiles: the last minute of `stats` messages ---------------------------------------------

const recent = [];

// Averages over the window; rates and latencies weighted by deliveries, "—" when the window
// holds no delivery (an idle minute has no success rate and no latency).
export function summarize(samples) {
  const n = samples.length;
  if (!n) return null;
  const sum = (f) => samples.reduce((total, s) => total + f(s), 0);
  const deliveries = sum((s) => s.deliveries_per_s || 0);
  const weighted = (key) => {
    const parts = samples.filter((s) => (s.deliveries_per_s || 0) > 0 && s[key] !== null && s[key] !== undefined);
    const weight = parts.reduce((total, s) => total + s.deliveries_per_s, 0);
    return weight ? parts.reduce((total, s) => total + s[key] * s.deliveries_per_s, 0) / weight : null;
  };
  const last = samples[n - 1];
  return {
    events_per_s: sum((s) => s.events_per_s || 0) / n,
    deliveries_per_s: deliveries / n,
    success_rate: deliveries ? weighted("success_rate") : null,
    p50_ms: deliveries ? weighted("p50_ms") : null,
    p95_ms: deliveries ? weighted("p95_ms") : null,
    in_flight: last.in_flight,
    pending: last.pending,
  };
}

const compact = (v) => (v >= 1000 ? `${(v / 1000).toFixed(v >= 10000 ? 0 : 1)}k` : `${Math.round(v * 10) / 10}`);

function showTiles() {
  const now = Date.now();
  while (recent.length && recent[0].at < now - TILE_WINDOW_S * 1000) recent.shift();
  const s = summarize(recent);
  const set = (id, text) => { document.getElementById(id).textContent = text; };
  if (!s) return;
  set("stat-events", compact(s.events_per_s));
  set("stat-deliveries", compact(s.deliveries_per_s));
  set("stat-success", s.success_rate === null ? "—" : percent(s.success_rate));
  set("stat-p50", s.p50_ms === null ? "—" : ms(s.p50_ms));
  set("stat-p95", s.p95_ms === null ? "—" : ms(s.p95_ms));
  set("stat-in-flight", String(s.in_flight ?? "—"));
  set("stat-pending", String(s.pending ?? "—"));
}

function onStats(stats) {
  recent.push({ ...stats, at: Date.now() });
  showTiles();
  if (!seriesAvailable) pushLivePoint(stats);
}

// --- charts ---------------------------------------------------------------------------------

const throughputChart = new LineChart(document.getElementById("chart-throughput"),
  [{ key: "events", label: "events/s" }, { key: "deliveries", label: "deliveries/s" }], compact, 1);
const successChart = new LineChart(document.getElementById("chart-success"),
  [{ key: "success", label: "success %" }], (v) => `${Math.round(v * 10) / 10}`, 100, 100);
const latencyChart = new LineChart(document.getElementById("chart-latency"),
  [{ key: "p50_ms", label: "p50" }, { key: "p95_ms", label: "p95" }], compact, 10);
let range = "1h";
let seriesAvailable = true;
const livePoints = [];

async function loadCharts() {
  let data;
  try {
    data = await loadSeries(["events", "deliveries", "success_rate", "p50_ms", "p95_ms"], range);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      seriesAvailable = false;
      document.getElementById("charts-note").textContent = "This server keeps no history (no stats API): since this page opened.";
      return;
    }
    document.getElementById("charts-note").textContent = `Could not load the history: ${error.message}`;
    return;
  }
  seriesAvailable = true;
  const perSecond = (v) => (v === null || v === undefined ? null : v / data.step);
  const points = data.points.map((p) => ({
    t: p.t,
    events: perSecond(p.events),
    deliveries: perSecond(p.deliveries),
    success: p.success_rate === null || p.success_rate === undefined ? null : p.success_rate * 100,
    p50_ms: p.p50_ms ?? null,
    p95_ms: p.p95_ms ?? null,
  }));
  for (const chart of [throughputChart, successChart, latencyChart]) chart.setData(points, data.start, data.end, data.step);
  document.getElementById("charts-note").textContent = `${RANGES[range].label}, one point per ${data.step >= 3600 ? `${data.step / 3600} h` : `${data.step / 60} min`}`;
  document.body.dataset.chartPoints = String(points.length);
}

function pushLivePoint(stats) {
  const t = Date.now();
  livePoints.push({ t, events: stats.events_per_s ?? 0, deliveries: stats.deliveries_per_s ?? 0,
    success: stats.success_rate === null || stats.success_rate === undefined ? null : stats.success_rate * 100,
    p50_ms: stats.p50_ms ?? null, p95_ms: stats.p95_ms ?? null });
  while (livePoints.length && livePoints[0].t < t - RANGES[range].seconds * 1000) livePoints.shift();
  for (const chart of [throughputChart, successChart, latencyChart]) chart.setData(livePoints, t - 300 * 1000, t, 1);
}

for (const button of document.querySelectorAll("[data-range]")) {
  button.addEventListener("click", () => {
    range = button.dataset.range;
    for (const other of document.querySelectorAll("[data-range]")) other.setAttribute("aria-pressed", String(other === button));
    loadCharts();
  });
}

// --- the live feed -----------------------------------------------------------------------------

const KINDS = {
  "event.received": ["event", "badge-info"],
  "delivery.succeeded": ["delivered", "badge-ok"],
  "delivery.failed": ["failed", "badge-bad"],
  "ingest.rejected": ["refused", "badge-bad"],
  "endpoint.disabled": ["endpoint disabled", "badge-bad"],
};

function describe(message) {
  if (message.type === "event.received") {
    const event = message.event || {};
    return { where: event.source || "published", detail: `${event.event_type || "(no event type)"} · ${bytes(event.size)}`, eventId: event.id };
  }
  if (DELIVERY_TYPES.has(message.type)) {
    const d = message.delivery || {};
    const outcome = d.status_code ? `HTTP ${d.status_code}` : (d.error || "no answer");
    let detail = `${outcome} · ${ms(d.duration_ms)} · attempt ${d.attempt ?? "?"}`;
    if (message.type === "delivery.attempted" && d.next_attempt_at) detail += ` · next ${clock(d.next_attempt_at)}`;
    return { where: endpointLabel(d.endpoint_id), detail, eventId: d.event_id };
  }
  if (message.type === "ingest.rejected") {
    return { where: message.source || "", detail: message.reason || "", eventId: null };
  }
  if (message.type === "endpoint.disabled") {
    const endpoint = message.endpoint || {};
    return { where: endpointLabel(endpoint.id), detail: endpoint.disabled_reason || "", eventId: null };
  }
  return { where: "", detail: JSON.stringify(message).slice(0, 200), eventId: null };
}

// The subscription's rule on the browser's side, for the rows already shown.
function feedWants(message, types, sources, endpoints) {
  if (types && !types.has(message.type)) return false;
  if (message.type === "event.received") return !sources.length || sources.includes((message.event || {}).source);
  if (message.type === "ingest.rejected") return !sources.length || sources.includes(message.source);
  if (DELIVERY_TYPES.has(message.type)) return !endpoints.length || endpoints.includes((message.delivery || {}).endpoint_id);
  if (message.type === "endpoint.disabled") return !endpoints.length || endpoints.includes((message.endpoint || {}).id);
  return true;
}

// Every attempt comes as delivery.attempted; the last one of a delivery also as
// delivery.succeeded or delivery.failed. The feed shows that one only once.
let shownTypes = null;

function redundant(message) {
  if (message.type !== "delivery.attempted" || !message.delivery) return false;
  const terminal = { succeeded: "delivery.succeeded", failed: "delivery.failed" }[message.delivery.status];
  return Boolean(terminal) && (shownTypes === null || shownTypes.has(terminal));
}

function kindOf(message) {
  if (message.type === "delivery.attempted") {
    const status = message.delivery && message.delivery.status;
    if (status === "succeeded") return ["attempt ok", "badge-ok"];
    if (status === "failed") return ["attempt failed", "badge-bad"];
    return ["failed, retrying", "badge-warn"];
  }
  return KINDS[message.type] || [message.type, "badge-muted"];
}

// The feed's rows are made once and reused: each update only rewrites their text, so a
// fast stream costs no element churn, and each row's layout is contained.
class Feed {
  constructor(body) {
    this.body = body;
    this.rows = [];
    this.shown = [];
    this.pending = [];
    this.paused = false;
    this.scheduled = false;
    this.lastRender = 0;
    this.received = 0;
    this.dropped = 0;
  }

  add(message) {
    this.received += 1;
    if (redundant(message)) return;
    if (message.type !== "event.received") message.at = clock();
    this.pending.push(message);
    if (this.pending.length > FEED_ROWS * 2) this.pending.splice(0, this.pending.length - FEED_ROWS);
    this.schedule();
  }

  // At most one DOM update per FEED_INTERVAL_MS, in an animation frame: under load the
  // messages of the interval go in together (only the newest FEED_ROWS of them).
  schedule() {
    if (this.scheduled || this.paused) return;
    this.scheduled = true;
    const wait = Math.max(0, this.lastRender + FEED_INTERVAL_MS - performance.now());
    setTimeout(() => requestAnimationFrame(() => { this.scheduled = false; this.render(); }), wait);
  }

  render() {
    if (this.paused || !this.pending.length) return;
    this.lastRender = performance.now();
    const fresh = this.pending.slice(-FEED_ROWS).reverse();
    this.pending = [];
    this.shown = fresh.concat(this.shown).slice(0, FEED_ROWS);
    while (this.rows.length < this.shown.length) {
      const row = makeRow();
      this.rows.push(row);
      this.body.append(row.element);
    }
    const animate = fresh.length <= 3;
    this.shown.forEach((message, index) => {
      const row = this.rows[index];
      if (row.message === message) return;
      fillRow(row, message, animate && index < fresh.length);
    });
    document.getElementById("feed-empty").hidden = true;
  }

  clear() {
    this.shown = [];
    this.pending = [];
    this.rows = [];
    this.body.replaceChildren();
    document.getElementById("feed-empty").hidden = false;
  }

  // Keep only the rows that pass `keep` (a new filter applies to what is shown too).
  retain(keep) {
    const kept = this.shown.filter(keep);
    this.pending = this.pending.filter(keep);
    this.shown = [];
    this.rows = [];
    this.body.replaceChildren();
    this.pending = kept.reverse().concat(this.pending);
    if (!this.pending.length) document.getElementById("feed-empty").hidden = false;
    this.render();
  }

  setPaused(paused) {
    this.paused = paused;
    if (!paused) this.schedule();
  }
}

function makeRow() {
  const time = h("span", { role: "cell", class: "c-time" });
  const badge = h("span", { class: "badge" });
  const where = h("span", { role: "cell", class: "c-where" });
  const detail = h("span", { role: "cell", class: "c-detail" });
  const button = h("button", { type: "button", class: "link-button", title: "Open in the inspector" });
  const link = h("a", { href: "/dashboard/sources", hidden: true }, "see sources");
  const element = h("div", { class: "feed-row", role: "row" },
    time, h("span", { role: "cell", class: "c-what" }, badge), where, detail,
    h("span", { role: "cell", class: "c-event" }, button, link));
  return { element, time, badge, where, detail, button, link, message: null };
}

function fillRow(row, message, animate) {
  const [label, badge] = kindOf(message);
  const { where, detail, eventId } = describe(message);
  row.message = message;
  row.element.dataset.type = message.type;
  if (eventId) row.element.dataset.event = eventId; else delete row.element.dataset.event;
  row.time.textContent = message.type === "event.received" ? clock(message.event && message.event.received_at) : (message.at || clock());
  row.badge.className = `badge ${badge}`;
  row.badge.textContent = label;
  row.where.textContent = where;
  row.where.title = where;
  row.detail.textContent = detail;
  row.detail.title = detail;
  row.button.hidden = !eventId;
  row.button.textContent = eventId || "";
  if (eventId) row.button.dataset.event = eventId; else delete row.button.dataset.event;
  row.link.hidden = message.type !== "ingest.rejected";
  row.element.classList.toggle("fresh", animate);
}

const feed = new Feed(document.getElementById("feed"));
document.getElementById("feed").addEventListener("click", (event) => {
  const target = event.target.closest("[data-event]");
  if (target && !event.target.closest("a")) inspector.open(target.dataset.event, event.target.closest("button") || target.querySelector("button"));
});
document.getElementById("feed-pause").addEventListener("click", (event) => {
  const paused = !feed.paused;
  feed.setPaused(paused);
  event.currentTarget.setAttribute("aria-pressed", String(paused));
  event.currentTarget.textContent = paused ? "Resume" : "Pause";
});
document.getElementById("feed-clear").addEventListener("click", () => feed.clear());

let lastCount = 0;
setInterval(() => {
  const rate = feed.received - lastCount;
  lastCount = feed.received;
  const dropped = feed.dropped ? ` · ${feed.dropped} not shown (server shed them under load)` : "";
  document.getElementById("feed-rate").textContent = `${rate} messages/s${dropped}`;
}, 1000);

document.getElementById("feed-filter").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const boxes = [...form.querySelectorAll("input[name=types]")];
  const checked = boxes.filter((box) => box.checked).map((box) => box.value);
  shownTypes = checked.length === boxes.length ? null : new Set(checked);
  const sources = splitList(form.elements.sources.value);
  const endpoints = splitList(form.elements.endpoints.value);
  live.subscribe({
    types: checked.length === boxes.length ? [] : (checked.length ? checked : ["none"]),
    sources,
    endpoints,
  });
  feed.retain((message) => feedWants(message, shownTypes, sources, endpoints));
  toast("Live feed filter applied");
});

// --- endpoints ---------------------------------------------------------------------------------

const CIRCUIT = { closed: "badge-ok", half_open: "badge-warn", open: "badge-bad" };
let endpointsAvailable = true;
let endpointsLoadedAt = 0;
let allEndpoints = [];
let healthById = new Map();
let endpointPage = 0;

async function loadHealth(endpoints) {
  try {
    const answer = await api("GET", "/stats/endpoints");
    return new Map((answer.data || []).map((row) => [row.endpoint_id, row]));
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
  }
  // A server without the all-endpoints answer: one request per endpoint on this page.
  const shown = endpoints.slice(0, 250);
  const stats = await Promise.all(shown.map((endpoint) => api("GET", `/endpoints/${encodeURIComponent(endpoint.id)}/stats`).catch(() => null)));
  return new Map(shown.map((endpoint, index) => [endpoint.id, stats[index]]));
}

async function loadEndpoints() {
  endpointsLoadedAt = Date.now();
  const tbody = document.getElementById("endpoints");
  const columns = canWrite ? 8 : 7;
  try {
    const page = await api("GET", "/endpoints?limit=250");
    allEndpoints = page.data || [];
    for (const endpoint of allEndpoints) rememberEndpoint(endpoint);
    healthById = await loadHealth(allEndpoints);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      endpointsAvailable = false;
      tbody.replaceChildren(h("tr", {}, h("td", { colspan: columns, class: "muted" }, "This server has no endpoints API (the dispatcher is not installed).")));
      return;
    }
    tbody.replaceChildren(h("tr", {}, h("td", { colspan: columns, class: "muted" }, `Could not load endpoints: ${error.message}`)));
    return;
  }
  showEndpoints();
}

function showEndpoints() {
  const tbody = document.getElementById("endpoints");
  const columns = canWrite ? 8 : 7;
  const query = document.getElementById("endpoint-search").value.trim().toLowerCase();
  const matching = allEndpoints.filter((e) => !query || [e.url, e.description, e.id].some((text) => (text || "").toLowerCase().includes(query)));
  const pages = Math.max(1, Math.ceil(matching.length / ENDPOINTS_PER_PAGE));
  endpointPage = Math.min(endpointPage, pages - 1);
  const pager = document.getElementById("endpoint-pager");
  pager.hidden = matching.length <= ENDPOINTS_PER_PAGE;
  document.getElementById("endpoint-page").textContent = `page ${endpointPage + 1} of ${pages} · ${plural(matching.length, "endpoint")}`;
  document.getElementById("endpoint-prev").disabled = endpointPage === 0;
  document.getElementById("endpoint-next").disabled = endpointPage >= pages - 1;
  if (!allEndpoints.length) {
    tbody.replaceChildren(h("tr", {}, h("td", { colspan: columns, class: "muted" },
      canWrite ? "No endpoints yet: create one with “New endpoint”." : "No endpoints yet.")));
    return;
  }
  if (!matching.length) {
    tbody.replaceChildren(h("tr", {}, h("td", { colspan: columns, class: "muted" }, "No endpoint matches the search.")));
    return;
  }
  const shown = matching.slice(endpointPage * ENDPOINTS_PER_PAGE, (endpointPage + 1) * ENDPOINTS_PER_PAGE);
  tbody.replaceChildren(...shown.map((endpoint) => endpointRow(endpoint, healthById.get(endpoint.id))));
}

document.getElementById("endpoint-search").addEventListener("input", () => { endpointPage = 0; showEndpoints(); });
document.getElementById("endpoint-prev").addEventListener("click", () => { endpointPage -= 1; showEndpoints(); });
document.getElementById("endpoint-next").addEventListener("click", () => { endpointPage += 1; showEndpoints(); });

function endpointRow(endpoint, stats) {
  const state = endpoint.enabled
    ? h("span", { class: "badge badge-ok" }, "enabled")
    : h("span", {}, h("span", { class: "badge badge-bad" }, "disabled"),
      endpoint.disabled_reason ? h("div", { class: "endpoint-desc" }, endpoint.disabled_reason) : null);
  const s = stats || {};
  const cells = [
    h("td", { class: "endpoint-cell" },
      h("a", { class: "endpoint-url", href: `/dashboard/endpoints/${encodeURIComponent(endpoint.id)}` }, endpoint.url),
      endpoint.description ? h("div", { class: "endpoint-desc" }, endpoint.description) : null,
      h("div", { class: "endpoint-desc mono" }, endpoint.id)),
    h("td", { "data-label": "State" }, state),
    h("td", { class: "num", "data-label": "Success" }, s.attempts ? percent(s.success_rate) : "—",
      s.attempts ? h("div", { class: "endpoint-desc" }, plural(s.attempts, "attempt")) : null),
    h("td", { class: "num", "data-label": "p50 / p95" }, s.attempts ? `${ms(s.p50_ms)} / ${ms(s.p95_ms)}` : "—"),
    h("td", { class: "num", "data-label": "In flight" }, String(s.in_flight ?? "—")),
    h("td", { class: "num", "data-label": "Pending" }, String(s.pending ?? "—")),
    h("td", { "data-label": "Circuit" }, s.circuit ? h("span", { class: `badge ${CIRCUIT[s.circuit] || "badge-muted"}` }, s.circuit.replace("_", " ")) : "—"),
  ];
  if (canWrite) {
    const id = endpoint.id;
    const button = (action, text) => h("button", { type: "button", class: "button-small action", dataset: { action, id } }, text);
    cells.push(h("td", { class: "actions-cell" }, h("div", { class: "actions" },
      endpoint.enabled ? button("disable", "Disable") : button("enable", "Enable"),
      button("edit", "Edit"), button("test", "Send test"), button("rotate", "Rotate secret"))));
  }
  return h("tr", { dataset: { endpoint: endpoint.id } }, ...cells);
}

document.getElementById("endpoints").addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const endpoint = allEndpoints.find((e) => e.id === button.dataset.id);
  if (!endpoint) return;
  await endpointAction(button.dataset.action, endpoint, button);
  if (button.dataset.action !== "edit") await loadEndpoints();
});

if (canWrite) {
  wireDialogs();
  wireEndpointForm(async () => { await loadEndpoints(); });
  document.getElementById("new-endpoint").addEventListener("click", () => openEndpointForm(null, allEndpoints[0]));
}

// --- wiring --------------------------------------------------------------------------------------

function onMessage(message) {
  if (message.type === "stats") {
    onStats(message.stats || {});
    return;
  }
  if (message.type === "subscribed" || message.type === "error") {
    if (message.type === "error") toast(`Live stream: ${message.detail}`, "error");
    return;
  }
  feed.add(message);
  inspector.onLive(message);
  if (message.type === "endpoint.disabled" && endpointsAvailable) {
    const endpoint = message.endpoint || {};
    toast(`${endpointLabel(endpoint.id)} was disabled${endpoint.disabled_reason ? `: ${endpoint.disabled_reason}` : ""}`, "error");
    loadEndpoints();
  } else if (DELIVERY_TYPES.has(message.type) && endpointsAvailable && !document.hidden
           && Date.now() - endpointsLoadedAt > ENDPOINT_LIVE_REFRESH_MS) loadEndpoints();
}

const live = connectLive({
  onMessage,
  onDropped: (count) => { feed.dropped += count; },
  onState: setConnectionState,
});

loadEndpoints();
loadCharts();
setInterval(() => { if (!document.hidden && endpointsAvailable) loadEndpoints(); }, ENDPOINT_REFRESH_MS);
setInterval(() => { if (!document.hidden && seriesAvailable) loadCharts(); }, SERIES_REFRESH_MS);
setInterval(showTiles, 5000);
inspector.openFromHash();
