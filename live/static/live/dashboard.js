// The live page: stats tiles, charts, endpoint health, the live feed and the event inspector.
import {
  ApiError, api, bytes, canWrite, clock, connectLive, copyText, h, ms, percent,
  reportError, setConnectionState, toast, when, wireDialogs,
} from "./common.js";

const FEED_ROWS = 200;
const FEED_INTERVAL_MS = 100;
const CHART_SECONDS = 300;
const ENDPOINT_REFRESH_MS = 10000;
const ENDPOINT_LIVE_REFRESH_MS = 3000;
const HEX_LIMIT = 64 * 1024;

const DELIVERY_TYPES = new Set(["delivery.attempted", "delivery.succeeded", "delivery.failed"]);
const endpointUrls = new Map();

// --- charts --------------------------------------------------------------------------------

class LineChart {
  constructor(canvas, keys, format, minimum) {
    this.canvas = canvas;
    this.keys = keys;
    this.format = format;
    this.minimum = minimum;
    this.points = [];
    this.pending = false;
    new ResizeObserver(() => this.requestDraw()).observe(canvas);
  }

  push(point) {
    this.points.push(point);
    const oldest = point.t - CHART_SECONDS * 1000;
    while (this.points.length && this.points[0].t < oldest) this.points.shift();
    this.requestDraw();
  }

  requestDraw() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }

  draw() {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const style = getComputedStyle(document.documentElement);
    const color = (name) => style.getPropertyValue(name).trim();
    const left = 48, right = width - 8, top = 8, bottom = height - 20;

    let max = 0;
    for (const point of this.points) {
      for (const key of this.keys) if (point[key] !== null && point[key] > max) max = point[key];
    }
    max = niceCeiling(Math.max(max, this.minimum));

    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = color("--muted");
    ctx.strokeStyle = color("--grid");
    ctx.lineWidth = 1;
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    for (let i = 0; i <= 4; i += 1) {
      const y = Math.round(bottom - (bottom - top) * (i / 4)) + 0.5;
      ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(right, y); ctx.stroke();
      ctx.fillText(this.format((max * i) / 4), left - 6, y);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (let minute = 0; minute <= CHART_SECONDS / 60; minute += 1) {
      const x = right - ((right - left) * minute * 60) / CHART_SECONDS;
      ctx.textAlign = minute === 0 ? "right" : "center";
      ctx.fillText(minute === 0 ? "now" : `-${minute}m`, x, bottom + 5);
    }

    const now = Date.now();
    const xOf = (t) => right - ((right - left) * (now - t)) / (CHART_SECONDS * 1000);
    const yOf = (v) => bottom - ((bottom - top) * v) / max;
    const series = [color("--series-a"), color("--series-b")];
    ctx.lineWidth = 2;
    ctx.lineJoin = "round";
    this.keys.forEach((key, index) => {
      ctx.strokeStyle = series[index];
      ctx.fillStyle = series[index];
      const runs = [];
      let run = [];
      let previous = null;
      for (const point of this.points) {
        const value = point[key];
        const gap = previous !== null && point.t - previous > 2500;
        if (value === null || value === undefined || gap) {
          if (run.length) runs.push(run);
          run = [];
        }
        if (value !== null && value !== undefined) run.push([xOf(point.t), yOf(value)]);
        previous = point.t;
      }
      if (run.length) runs.push(run);
      for (const points of runs) {
        if (points.length === 1) {
          ctx.beginPath();
          ctx.arc(points[0][0], points[0][1], 2.5, 0, Math.PI * 2);
          ctx.fill();
          continue;
        }
        ctx.beginPath();
        points.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
        ctx.stroke();
      }
    });
  }
}

// The axis top: four ticks of a round step (1, 2, 2.5 or 5 times a power of ten).
function niceCeiling(value) {
  const rough = value / 4;
  const power = 10 ** Math.floor(Math.log10(rough));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (rough <= step * power) return 4 * step * power;
  }
  return 40 * power;
}

const compact = (v) => (v >= 1000 ? `${(v / 1000).toFixed(v >= 10000 ? 0 : 1)}k` : `${Math.round(v * 10) / 10}`);
const throughputChart = new LineChart(document.getElementById("chart-throughput"), ["events", "deliveries"], compact, 4);
const latencyChart = new LineChart(document.getElementById("chart-latency"), ["p50", "p95"], compact, 20);

function showStats(stats) {
  const set = (id, text) => { document.getElementById(id).textContent = text; };
  set("stat-events", compact(stats.events_per_s ?? 0));
  set("stat-deliveries", compact(stats.deliveries_per_s ?? 0));
  set("stat-success", percent(stats.success_rate));
  set("stat-p50", ms(stats.p50_ms));
  set("stat-p95", ms(stats.p95_ms));
  set("stat-in-flight", String(stats.in_flight ?? "–"));
  set("stat-pending", String(stats.pending ?? "–"));
  const t = Date.now();
  throughputChart.push({ t, events: stats.events_per_s ?? 0, deliveries: stats.deliveries_per_s ?? 0 });
  latencyChart.push({ t, p50: stats.p50_ms ?? null, p95: stats.p95_ms ?? null });
}

// --- the live feed -----------------------------------------------------------------------------

const KINDS = {
  "event.received": ["event", "badge-info"],
  "delivery.succeeded": ["delivered", "badge-ok"],
  "delivery.failed": ["failed", "badge-bad"],
  "ingest.rejected": ["refused", "badge-bad"],
  "endpoint.disabled": ["endpoint disabled", "badge-bad"],
};

function endpointLabel(id) {
  return endpointUrls.get(id) || id || "";
}

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
    return ["attempt failed, retrying", "badge-warn"];
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
  if (target && !event.target.closest("a")) openInspector(target.dataset.event, event.target.closest("button") || target.querySelector("button"));
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

const splitList = (text) => text.split(/[\s,]+/).map((part) => part.trim()).filter(Boolean);

document.getElementById("feed-filter").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const boxes = [...form.querySelectorAll("input[name=types]")];
  const checked = boxes.filter((box) => box.checked).map((box) => box.value);
  shownTypes = checked.length === boxes.length ? null : new Set(checked);
  live.subscribe({
    types: checked.length === boxes.length ? [] : (checked.length ? checked : ["none"]),
    sources: splitList(form.elements.sources.value),
    endpoints: splitList(form.elements.endpoints.value),
  });
  toast("Live feed filter applied");
});

// --- endpoints ---------------------------------------------------------------------------------

const CIRCUIT = { closed: "badge-ok", half_open: "badge-warn", open: "badge-bad" };
let endpointsAvailable = true;

let endpointsLoadedAt = 0;

async function loadEndpoints() {
  endpointsLoadedAt = Date.now();
  const tbody = document.getElementById("endpoints");
  const columns = canWrite ? 8 : 7;
  let page;
  try {
    page = await api("GET", "/endpoints?limit=250");
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      endpointsAvailable = false;
      tbody.replaceChildren(h("tr", {}, h("td", { colspan: columns, class: "muted" }, "This server has no endpoints API (the dispatcher is not installed).")));
      return;
    }
    tbody.replaceChildren(h("tr", {}, h("td", { colspan: columns, class: "muted" }, `Could not load endpoints: ${error.message}`)));
    return;
  }
  const endpoints = page.data || [];
  for (const endpoint of endpoints) endpointUrls.set(endpoint.id, endpoint.url);
  if (!endpoints.length) {
    tbody.replaceChildren(h("tr", {}, h("td", { colspan: columns, class: "muted" },
      canWrite ? "No endpoints yet: create one with “New endpoint”." : "No endpoints yet.")));
    return;
  }
  // One request for the health of every endpoint (read from rollups), not one per endpoint.
  let health = new Map();
  try {
    const answer = await api("GET", "/stats/endpoints");
    health = new Map((answer.data || []).map((row) => [row.endpoint_id, row]));
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
  }
  tbody.replaceChildren(...endpoints.map((endpoint) => endpointRow(endpoint, health.get(endpoint.id))));
}

function endpointRow(endpoint, stats) {
  const state = endpoint.enabled
    ? h("span", { class: "badge badge-ok" }, "enabled")
    : h("span", {}, h("span", { class: "badge badge-bad" }, "disabled"),
      endpoint.disabled_reason ? h("div", { class: "endpoint-desc" }, endpoint.disabled_reason) : null);
  const s = stats || {};
  const cells = [
    h("td", { class: "endpoint-cell" },
      h("div", { class: "endpoint-url" }, endpoint.url),
      endpoint.description ? h("div", { class: "endpoint-desc" }, endpoint.description) : null,
      h("div", { class: "endpoint-desc mono" }, endpoint.id)),
    h("td", { "data-label": "State" }, state),
    h("td", { class: "num", "data-label": "Success" }, s.attempts ? percent(s.success_rate) : "–",
      s.attempts ? h("div", { class: "endpoint-desc" }, `${s.attempts} attempts`) : null),
    h("td", { class: "num", "data-label": "p50 / p95" }, s.attempts ? `${ms(s.p50_ms)} / ${ms(s.p95_ms)}` : "–"),
    h("td", { class: "num", "data-label": "In flight" }, String(s.in_flight ?? "–")),
    h("td", { class: "num", "data-label": "Pending" }, String(s.pending ?? "–")),
    h("td", { "data-label": "Circuit" }, s.circuit ? h("span", { class: `badge ${CIRCUIT[s.circuit] || "badge-muted"}` }, s.circuit.replace("_", " ")) : "–"),
  ];
  if (canWrite) {
    const id = endpoint.id;
    cells.push(h("td", { class: "actions-cell" }, h("div", { class: "actions" },
      endpoint.enabled
        ? h("button", { type: "button", class: "button-small action", dataset: { action: "disable", id } }, "Disable")
        : h("button", { type: "button", class: "button-small action", dataset: { action: "enable", id } }, "Enable"),
      h("button", { type: "button", class: "button-small action", dataset: { action: "test", id } }, "Send test"),
      h("button", { type: "button", class: "button-small action", dataset: { action: "rotate", id } }, "Rotate secret"))));
  }
  return h("tr", { dataset: { endpoint: endpoint.id } }, ...cells);
}

async function endpointAction(action, id, button) {
  const path = `/endpoints/${encodeURIComponent(id)}`;
  button.disabled = true;
  try {
    if (action === "enable" || action === "disable") {
      await api("POST", `${path}/${action}`);
      toast(`Endpoint ${action}d`);
    } else if (action === "test") {
      await api("POST", `${path}/test`);
      toast("Test event sent: watch the feed");
    } else if (action === "rotate") {
      if (!(await confirmAction(`Rotate the signing secret of ${endpointLabel(id)}? The old secret keeps signing for 24 hours.`))) return;
      const answer = await api("POST", `${path}/rotate-secret`);
      showSecret(answer.secret, "The new signing secret. Deliveries carry signatures with the old and the new secret for 24 hours.");
    }
    await loadEndpoints();
  } catch (error) {
    reportError(error, `Could not ${action === "test" ? "send a test event" : action}`);
  } finally {
    button.disabled = false;
  }
}

document.getElementById("endpoints").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (button) endpointAction(button.dataset.action, button.dataset.id, button);
});

function confirmAction(text) {
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-text").textContent = text;
  return new Promise((resolve) => {
    let confirmed = false;
    const ok = document.getElementById("confirm-ok");
    const onOk = () => { confirmed = true; dialog.close(); };
    ok.addEventListener("click", onOk);
    dialog.addEventListener("close", () => {
      ok.removeEventListener("click", onOk);
      resolve(confirmed);
    }, { once: true });
    dialog.showModal();
  });
}

function showSecret(secret, text) {
  document.getElementById("secret-dialog-text").textContent = text;
  document.getElementById("secret-value").textContent = secret;
  document.getElementById("secret-dialog").showModal();
}

if (canWrite) {
  wireDialogs();
  document.getElementById("secret-copy").addEventListener("click", () => copyText(document.getElementById("secret-value").textContent));
  const dialog = document.getElementById("endpoint-dialog");
  document.getElementById("new-endpoint").addEventListener("click", () => {
    document.getElementById("endpoint-form").reset();
    document.getElementById("endpoint-error").hidden = true;
    dialog.showModal();
  });
  document.getElementById("endpoint-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const error = document.getElementById("endpoint-error");
    try {
      const created = await api("POST", "/endpoints", {
        url: form.elements.url.value.trim(),
        description: form.elements.description.value.trim(),
        event_types: splitList(form.elements.event_types.value),
        sources: splitList(form.elements.sources.value),
      });
      dialog.close();
      showSecret(created.secret, "The endpoint’s signing secret: give it to the endpoint’s owner now (it can be read again with GET /api/v1/endpoints/{id}/secret).");
      await loadEndpoints();
    } catch (problem) {
      error.textContent = problem.message;
      error.hidden = false;
    }
  });
}

// --- inspector -----------------------------------------------------------------------------------

const inspector = document.getElementById("inspector");
const inspectorBody = document.getElementById("inspector-body");
let inspected = null;
let returnFocus = null;
let refreshTimer = null;

function decodeBase64(text) {
  const raw = atob(text || "");
  const data = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i += 1) data[i] = raw.charCodeAt(i);
  return data;
}

function hexDump(data) {
  const lines = [];
  const end = Math.min(data.length, HEX_LIMIT);
  for (let offset = 0; offset < end; offset += 16) {
    const row = data.subarray(offset, Math.min(offset + 16, end));
    const hex = [...row].map((b) => b.toString(16).padStart(2, "0")).join(" ").padEnd(47, " ");
    const ascii = [...row].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".")).join("");
    lines.push(`${offset.toString(16).padStart(8, "0")}  ${hex}  ${ascii}`);
  }
  if (data.length > end) lines.push(`… ${data.length - end} more bytes`);
  return lines.join("\n");
}

function bodyView(event) {
  if (event.body === null || event.body === undefined) {
    return [h("p", { class: "muted" }, "Binary body (not UTF-8): hex dump."),
      h("pre", { class: "body hex", "data-kind": "hex" }, hexDump(decodeBase64(event.body_base64)))];
  }
  if (event.body === "") return [h("p", { class: "muted" }, "Empty body.")];
  try {
    const parsed = JSON.parse(event.body);
    return [h("pre", { class: "body", "data-kind": "json" }, JSON.stringify(parsed, null, 2))];
  } catch {
    return [h("pre", { class: "body", "data-kind": "text" }, event.body)];
  }
}

function headersTable(headers) {
  const entries = Object.entries(headers || {});
  if (!entries.length) return h("p", { class: "muted" }, "none");
  return h("dl", { class: "kv" }, ...entries.flatMap(([name, value]) => [h("dt", {}, name), h("dd", {}, String(value))]));
}

const STATUS_BADGE = { succeeded: "badge-ok", failed: "badge-bad", retrying: "badge-warn", pending: "badge-muted", delivering: "badge-info", cancelled: "badge-muted" };

function attemptView(attempt) {
  const outcome = attempt.status_code !== null && attempt.status_code !== undefined ? `HTTP ${attempt.status_code}` : (attempt.error || "no answer");
  const good = attempt.status_code >= 200 && attempt.status_code < 300;
  return h("details", { class: "attempt" },
    h("summary", {}, h("span", { class: `badge ${good ? "badge-ok" : "badge-bad"}` }, outcome),
      ` attempt ${attempt.number} · ${ms(attempt.duration_ms)} · ${when(attempt.started_at)}`),
    h("div", { class: "attempt-grid" },
      h("div", {}, h("h4", {}, "Request headers"), headersTable(attempt.request_headers)),
      h("div", {}, h("h4", {}, "Response"),
        attempt.error ? h("p", {}, `Error: ${attempt.error}`) : null,
        headersTable(attempt.response_headers),
        attempt.response_body ? h("pre", { class: "body" }, attempt.response_body) : h("p", { class: "muted" }, "empty body"))));
}

async function deliveryView(summary) {
  let detail = summary;
  try {
    detail = await api("GET", `/deliveries/${encodeURIComponent(summary.id)}`);
  } catch { /* the summary is shown without attempts */ }
  const attempts = detail.attempts || [];
  const status = detail.status || "unknown";
  return h("div", { class: "delivery", dataset: { delivery: detail.id } },
    h("div", { class: "delivery-head" },
      h("span", { class: `badge ${STATUS_BADGE[status] || "badge-muted"}` }, status),
      h("span", { class: "mono" }, detail.id),
      h("span", { class: "muted" }, `→ ${endpointLabel(detail.endpoint_id)}`),
      h("span", { class: "muted" }, `${detail.attempts_count ?? attempts.length} attempt(s)`),
      canWrite && !["delivering", "cancelled"].includes(status)
        ? h("button", { type: "button", class: "button-small action", dataset: { action: "retry", delivery: detail.id } }, "Retry")
        : null),
    detail.next_attempt_at ? h("div", { class: "muted" }, `next attempt ${when(detail.next_attempt_at)}`) : null,
    ...attempts.slice().reverse().map(attemptView));
}

async function renderInspector(eventId) {
  const event = await api("GET", `/events/${encodeURIComponent(eventId)}`);
  if (inspected !== eventId) return;
  const open = new Set([...inspectorBody.querySelectorAll("details[open]")].map((node) => node.dataset.key));
  const summary = h("dl", { class: "kv" },
    ...[["source", event.source || "published through the API"], ["event type", event.event_type || "–"],
      ["received", when(event.received_at)], ["method", event.method], ["query", event.query || "–"],
      ["content type", event.content_type || "–"], ["size", bytes(event.size)], ["dedup key", event.dedup_key || "–"]]
      .flatMap(([key, value]) => [h("dt", {}, key), h("dd", {}, value)]));
  const deliveries = event.deliveries || [];
  const views = await Promise.all(deliveries.map(deliveryView));
  if (inspected !== eventId) return;
  const parts = [
    summary,
    h("h3", {}, "Headers"), headersTable(event.headers),
    h("h3", {}, "Body"), ...bodyView(event),
    h("h3", {}, `Deliveries (${deliveries.length})`),
    deliveries.length ? null : h("p", { class: "muted" }, "No deliveries: no enabled endpoint wanted this event (yet)."),
    ...views,
  ];
  inspectorBody.replaceChildren(...parts.filter(Boolean));
  inspectorBody.querySelectorAll("details").forEach((node, index) => {
    node.dataset.key = String(index);
    if (open.has(String(index))) node.open = true;
  });
}

async function openInspector(eventId, opener) {
  inspected = eventId;
  returnFocus = opener || document.activeElement;
  document.getElementById("inspector-title").textContent = eventId;
  inspectorBody.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  inspector.hidden = false;
  inspector.focus();
  if (window.location.hash !== `#event=${eventId}`) history.replaceState(null, "", `#event=${eventId}`);
  try {
    await renderInspector(eventId);
  } catch (error) {
    inspectorBody.replaceChildren(h("p", { class: "error" }, `Could not load ${eventId}: ${error.message}`));
  }
}

function closeInspector() {
  inspected = null;
  inspector.hidden = true;
  history.replaceState(null, "", window.location.pathname + window.location.search);
  if (returnFocus && document.contains(returnFocus)) returnFocus.focus();
}

function refreshInspectorSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => {
    if (inspected) renderInspector(inspected).catch(() => {});
  }, 300);
}

document.getElementById("inspector-close").addEventListener("click", closeInspector);
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && !inspector.hidden && !document.querySelector("dialog[open]")) closeInspector();
});
inspectorBody.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-action=retry]");
  if (!button) return;
  button.disabled = true;
  try {
    await api("POST", `/deliveries/${encodeURIComponent(button.dataset.delivery)}/retry`);
    toast("Retry queued");
    refreshInspectorSoon();
  } catch (error) {
    reportError(error, "Could not retry");
    button.disabled = false;
  }
});
const replayButton = document.getElementById("inspector-replay");
if (replayButton) {
  replayButton.addEventListener("click", async () => {
    if (!inspected) return;
    replayButton.disabled = true;
    try {
      const answer = await api("POST", `/events/${encodeURIComponent(inspected)}/replay`, {});
      const count = answer && typeof answer.count === "number" ? answer.count : null;
      if (count === 0) toast("Nothing to replay to: no enabled endpoint wants this event", "error");
      else toast(`Replay queued: ${count ?? "new"} deliver${count === 1 ? "y" : "ies"} below`);
      refreshInspectorSoon();
    } catch (error) {
      reportError(error, "Could not replay");
    } finally {
      replayButton.disabled = false;
    }
  });
}

function openFromHash() {
  const match = /^#event=([A-Za-z0-9_]+)$/.exec(window.location.hash);
  if (match && match[1] !== inspected) openInspector(match[1]);
}
window.addEventListener("hashchange", openFromHash);

// --- wiring --------------------------------------------------------------------------------------

function onMessage(message) {
  if (message.type === "stats") {
    showStats(message.stats || {});
    return;
  }
  if (message.type === "subscribed" || message.type === "error") {
    if (message.type === "error") toast(`Live stream: ${message.detail}`, "error");
    return;
  }
  feed.add(message);
  if (inspected && DELIVERY_TYPES.has(message.type) && message.delivery && message.delivery.event_id === inspected) {
    refreshInspectorSoon();
  }
  if (message.type === "endpoint.disabled" && endpointsAvailable) loadEndpoints();
  else if (DELIVERY_TYPES.has(message.type) && endpointsAvailable && !document.hidden
           && Date.now() - endpointsLoadedAt > ENDPOINT_LIVE_REFRESH_MS) loadEndpoints();
}

const live = connectLive({
  onMessage,
  onDropped: (count) => { feed.dropped += count; },
  onState: setConnectionState,
});

loadEndpoints();
setInterval(() => { if (!document.hidden && endpointsAvailable) loadEndpoints(); }, ENDPOINT_REFRESH_MS);
openFromHash();
