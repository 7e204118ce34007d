// The event inspector (a side panel on every page that lists events or deliveries): the
// event's headers and body, each delivery with its attempts, what changed between two
// attempts, why a delivery waits, replay and retry.
import { ApiError, api, bytes, canWrite, h, ms, plural, reportError, toast, when } from "./common.js";

const HEX_LIMIT = 64 * 1024;
const RETRYABLE = new Set(["failed", "retrying"]);
const STATUS_BADGE = { succeeded: "badge-ok", failed: "badge-bad", retrying: "badge-warn", pending: "badge-muted", delivering: "badge-info", cancelled: "badge-muted" };

const endpoints = new Map();

export function rememberEndpoint(endpoint) {
  endpoints.set(endpoint.id, { endpoint, at: Date.now() });
}

export async function endpointInfo(id) {
  const known = endpoints.get(id);
  if (known && Date.now() - known.at < 5000) return known.endpoint;
  try {
    const endpoint = await api("GET", `/endpoints/${encodeURIComponent(id)}`);
    rememberEndpoint(endpoint);
    return endpoint;
  } catch {
    return known ? known.endpoint : null;
  }
}

export function endpointLabel(id) {
  const known = endpoints.get(id);
  return (known && known.endpoint.url) || id || "";
}

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

export function headersTable(headers) {
  const entries = Object.entries(headers || {});
  if (!entries.length) return h("p", { class: "muted" }, "none");
  return h("dl", { class: "kv headers" }, ...entries.flatMap(([name, value]) => [h("dt", {}, name), h("dd", {}, String(value))]));
}

const outcomeOf = (attempt) => (attempt.status_code !== null && attempt.status_code !== undefined
  ? `HTTP ${attempt.status_code}` : (attempt.error || "no answer"));

// What differs between two attempts of one delivery: outcome, headers, body.
export function attemptDiff(before, after) {
  const changes = [];
  if (outcomeOf(before) !== outcomeOf(after)) changes.push(["outcome", outcomeOf(before), outcomeOf(after)]);
  for (const [label, key] of [["request", "request_headers"], ["response", "response_headers"]]) {
    const a = before[key] || {};
    const b = after[key] || {};
    for (const name of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
      if (a[name] !== b[name]) changes.push([`${label} ${name}`, a[name] ?? "(absent)", b[name] ?? "(absent)"]);
    }
  }
  if ((before.response_body || "") !== (after.response_body || "")) {
    changes.push(["response body", (before.response_body || "(empty)").slice(0, 200), (after.response_body || "(empty)").slice(0, 200)]);
  }
  return changes;
}

function diffView(before, after) {
  const changes = attemptDiff(before, after);
  return h("details", { class: "attempt-diff", dataset: { diff: `${before.number}-${after.number}` } },
    h("summary", {}, `What changed from attempt ${before.number} to ${after.number} (${plural(changes.length, "difference")})`),
    changes.length
      ? h("table", { class: "table diff" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "what"), h("th", { scope: "col" }, `attempt ${before.number}`), h("th", { scope: "col" }, `attempt ${after.number}`))),
        h("tbody", {}, ...changes.map(([what, a, b]) => h("tr", {}, h("td", {}, what), h("td", { class: "mono wrap" }, String(a)), h("td", { class: "mono wrap" }, String(b))))))
      : h("p", { class: "muted" }, "Nothing but the time."));
}

function attemptView(attempt) {
  const good = attempt.status_code >= 200 && attempt.status_code < 300;
  return h("details", { class: "attempt", dataset: { attempt: String(attempt.number) } },
    h("summary", {}, h("span", { class: `badge ${good ? "badge-ok" : "badge-bad"}` }, outcomeOf(attempt)),
      ` attempt ${attempt.number} · ${ms(attempt.duration_ms)} · ${when(attempt.started_at)}`),
    h("div", { class: "attempt-grid" },
      h("div", {}, h("h4", {}, "Request headers"), headersTable(attempt.request_headers)),
      h("div", {}, h("h4", {}, "Response"),
        attempt.error ? h("p", {}, `Error: ${attempt.error}`) : null,
        headersTable(attempt.response_headers),
        attempt.response_body ? h("pre", { class: "body" }, attempt.response_body) : h("p", { class: "muted" }, "empty body"))));
}

// Why a delivery with no attempt (or one waiting) has not been sent: disabled endpoint,
// open circuit, a scheduled retry.
async function waitingReason(detail) {
  if (!["pending", "retrying"].includes(detail.status)) return null;
  const endpoint = await endpointInfo(detail.endpoint_id);
  if (endpoint && !endpoint.enabled) {
    return `Held: the endpoint is disabled${endpoint.disabled_reason ? ` (${endpoint.disabled_reason})` : ""}. It is sent when the endpoint is enabled again.`;
  }
  let circuit = null;
  try {
    circuit = (await api("GET", `/endpoints/${encodeURIComponent(detail.endpoint_id)}/stats`)).circuit;
  } catch { /* no stats: say what is known */ }
  if (circuit === "open" || circuit === "half_open") {
    return `Held by the endpoint’s open circuit: too many recent failures, so Relay waits out a cool-down and then sends one probe before the rest${detail.next_attempt_at ? ` (next try ${when(detail.next_attempt_at)})` : ""}.`;
  }
  if (detail.next_attempt_at && new Date(detail.next_attempt_at) > new Date()) {
    return `Next attempt ${when(detail.next_attempt_at)}.`;
  }
  return detail.attempts_count ? null : "Queued: a dispatcher picks it up next.";
}

async function deliveryView(summary, replay) {
  let detail = summary;
  try {
    detail = await api("GET", `/deliveries/${encodeURIComponent(summary.id)}`);
  } catch { /* the summary is shown without attempts */ }
  const attempts = detail.attempts || [];
  const status = detail.status || "unknown";
  const count = detail.attempts_count ?? attempts.length;
  const reason = await waitingReason(detail);
  const diffs = [];
  for (let i = attempts.length - 1; i > 0; i -= 1) diffs.push(attempts[i], diffView(attempts[i - 1], attempts[i]));
  if (attempts.length) diffs.push(attempts[0]);
  return h("div", { class: "delivery", dataset: { delivery: detail.id, status } },
    h("div", { class: "delivery-head" },
      h("span", { class: `badge ${STATUS_BADGE[status] || "badge-muted"}` }, status),
      replay ? h("span", { class: "badge badge-info", title: "A replay: a new delivery of this event made by hand" }, "replay") : null,
      h("span", { class: "mono" }, detail.id),
      h("a", { class: "muted endpoint-link", href: `/dashboard/endpoints/${encodeURIComponent(detail.endpoint_id)}` }, `→ ${endpointLabel(detail.endpoint_id)}`),
      h("span", { class: "muted" }, plural(count, "attempt")),
      canWrite && RETRYABLE.has(status)
        ? h("button", { type: "button", class: "button-small action", dataset: { action: "retry", delivery: detail.id } }, "Retry now")
        : null),
    reason ? h("p", { class: "muted waiting" }, reason) : null,
    ...diffs.map((item) => (item instanceof Node ? item : attemptView(item))));
}

export class Inspector {
  constructor({ onReplay } = {}) {
    this.panel = document.getElementById("inspector");
    this.body = document.getElementById("inspector-body");
    this.title = document.getElementById("inspector-title");
    this.replayButton = document.getElementById("inspector-replay");
    this.inspected = null;
    this.returnFocus = null;
    this.timer = null;
    this.onReplay = onReplay;
    document.getElementById("inspector-close").addEventListener("click", () => this.close());
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !this.panel.hidden && !document.querySelector("dialog[open]")) this.close();
    });
    this.body.addEventListener("click", (event) => this.onClick(event));
    if (this.replayButton) this.replayButton.addEventListener("click", () => this.replay());
    window.addEventListener("hashchange", () => this.openFromHash());
  }

  async onClick(event) {
    const button = event.target.closest("button[data-action=retry]");
    if (!button) return;
    button.disabled = true;
    try {
      await api("POST", `/deliveries/${encodeURIComponent(button.dataset.delivery)}/retry`);
      toast("Retry queued");
      this.refreshSoon();
    } catch (error) {
      reportError(error, "Could not retry");
      button.disabled = false;
    }
  }

  async replay() {
    if (!this.inspected) return;
    this.replayButton.disabled = true;
    try {
      const answer = await api("POST", `/events/${encodeURIComponent(this.inspected)}/replay`, {});
      const count = answer && typeof answer.count === "number" ? answer.count : null;
      if (count === 0) toast("Nothing to replay to: no enabled endpoint wants this event", "error");
      else toast(`Replay queued: ${count === null ? "new deliveries" : plural(count, "new delivery", "new deliveries")} below`);
      this.refreshSoon();
      if (this.onReplay) this.onReplay(this.inspected);
    } catch (error) {
      reportError(error, "Could not replay");
    } finally {
      this.replayButton.disabled = false;
    }
  }

  async render(eventId) {
    let event;
    try {
      event = await api("GET", `/events/${encodeURIComponent(eventId)}`);
    } catch (error) {
      if (this.inspected !== eventId) return;
      if (this.replayButton) this.replayButton.hidden = true;
      const text = error instanceof ApiError && error.status === 404
        ? `There is no event ${eventId} (a mistyped id, or it is older than the retention period).`
        : `Could not load ${eventId}: ${error.message}`;
      this.body.replaceChildren(h("p", { class: "error", dataset: { missing: "true" } }, text));
      return;
    }
    if (this.inspected !== eventId) return;
    if (this.replayButton) this.replayButton.hidden = false;
    const open = new Set([...this.body.querySelectorAll("details[open]")].map((node) => node.dataset.key));
    const summary = h("dl", { class: "kv" },
      ...[["source", event.source || "published through the API"], ["event type", event.event_type || "–"],
        ["received", when(event.received_at)], ["method", event.method], ["query", event.query || "–"],
        ["content type", event.content_type || "–"], ["size", bytes(event.size)], ["dedup key", event.dedup_key || "–"]]
        .flatMap(([key, value]) => [h("dt", {}, key), h("dd", {}, value)]));
    const deliveries = event.deliveries || [];
    await Promise.all([...new Set(deliveries.map((d) => d.endpoint_id))].map(endpointInfo));
    const firstTo = new Map();
    for (const delivery of deliveries) if (!firstTo.has(delivery.endpoint_id)) firstTo.set(delivery.endpoint_id, delivery.id);
    const views = await Promise.all(deliveries.map((d) => deliveryView(d, firstTo.get(d.endpoint_id) !== d.id)));
    if (this.inspected !== eventId) return;
    const parts = [
      summary,
      h("h3", {}, "Headers"), headersTable(event.headers),
      h("h3", {}, "Body"), ...bodyView(event),
      h("h3", {}, `Deliveries (${deliveries.length})`),
      deliveries.length ? null : h("p", { class: "muted" }, "No deliveries: no enabled endpoint wanted this event (yet)."),
      ...views,
    ];
    this.body.replaceChildren(...parts.filter(Boolean));
    this.body.querySelectorAll("details").forEach((node) => {
      const key = node.dataset.attempt ? `a${node.closest(".delivery").dataset.delivery}:${node.dataset.attempt}`
        : `d${node.closest(".delivery") ? node.closest(".delivery").dataset.delivery : ""}:${node.dataset.diff || ""}`;
      node.dataset.key = key;
      if (open.has(key)) node.open = true;
    });
  }

  async open(eventId, opener) {
    this.inspected = eventId;
    this.returnFocus = opener || document.activeElement;
    this.title.textContent = eventId;
    this.body.replaceChildren(h("p", { class: "muted" }, "Loading…"));
    this.panel.hidden = false;
    this.panel.focus();
    if (window.location.hash !== `#event=${eventId}`) history.replaceState(null, "", `${window.location.pathname}${window.location.search}#event=${eventId}`);
    await this.render(eventId);
  }

  close() {
    this.inspected = null;
    this.panel.hidden = true;
    history.replaceState(null, "", window.location.pathname + window.location.search);
    if (this.returnFocus && document.contains(this.returnFocus)) this.returnFocus.focus();
  }

  refreshSoon() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      if (this.inspected) this.render(this.inspected).catch(() => {});
    }, 300);
  }

  // A live message about a delivery of the inspected event refreshes the panel.
  onLive(message) {
    if (this.inspected && message.delivery && message.delivery.event_id === this.inspected) this.refreshSoon();
  }

  openFromHash() {
    const match = /^#event=([A-Za-z0-9_]+)$/.exec(window.location.hash);
    if (match && match[1] !== this.inspected) this.open(match[1]);
  }
}
