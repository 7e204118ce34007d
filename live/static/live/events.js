// The event log: server-side filters held in the address, cursor paging, the inspector one
// click away, matching events arriving live at the top, bulk replay after a count.
import {
  ApiError, api, bytes, canWrite, confirmAction, connectLive, fromLocalInput, h, localInput,
  plural, reportError, setConnectionState, toast, when, wireDialogs,
} from "./common.js";
import { Inspector } from "./inspector.js";

const FIELDS = ["source", "event_type", "since", "until", "status", "endpoint", "filter"];
const PAGE = 50;
const LIVE_REFRESH_MS = 800;

const inspector = new Inspector();
const form = document.getElementById("event-filters");
const tbody = document.getElementById("events");
const moreButton = document.getElementById("load-more");
let cursor = null;
let shownIds = new Set();
let loading = false;

function filtersFromUrl() {
  const params = new URLSearchParams(window.location.search);
  const filters = {};
  for (const name of FIELDS) if (params.get(name)) filters[name] = params.get(name);
  return filters;
}

function fillForm(filters) {
  for (const name of FIELDS) {
    const value = filters[name] || "";
    form.elements[name].value = name === "since" || name === "until" ? localInput(value) : value;
  }
}

function filtersFromForm() {
  const filters = {};
  for (const name of FIELDS) {
    const raw = form.elements[name].value.trim();
    const value = name === "since" || name === "until" ? fromLocalInput(raw) : raw;
    if (value) filters[name] = value;
  }
  return filters;
}

function row(event) {
  const open = h("button", { type: "button", class: "link-button", dataset: { event: event.id }, title: "Open in the inspector" }, event.id);
  return h("tr", { dataset: { event: event.id } },
    h("td", { "data-label": "Received", class: "nowrap" }, when(event.received_at)),
    h("td", { "data-label": "Source" }, event.source || "published"),
    h("td", { "data-label": "Type", class: "mono" }, event.event_type || "–"),
    h("td", { class: "num", "data-label": "Size" }, bytes(event.size)),
    h("td", { "data-label": "Event" }, open));
}

function showError(error) {
  const slot = document.getElementById("filters-error");
  slot.textContent = error ? error.message : "";
  slot.hidden = !error;
}

async function fetchPage(filters, after, limit = PAGE) {
  const params = new URLSearchParams({ ...filters, limit: String(limit) });
  if (after) params.set("cursor", after);
  return api("GET", `/events?${params}`);
}

async function search(append) {
  if (loading) return;
  loading = true;
  const filters = filtersFromUrl();
  try {
    const page = await fetchPage(filters, append ? cursor : null);
    showError(null);
    if (!append) { tbody.replaceChildren(); shownIds = new Set(); }
    const fresh = (page.data || []).filter((event) => !shownIds.has(event.id));
    for (const event of fresh) shownIds.add(event.id);
    tbody.append(...fresh.map(row));
    cursor = page.next_cursor;
    moreButton.hidden = !cursor;
    document.getElementById("events-empty").hidden = shownIds.size > 0 || Boolean(cursor);
    document.getElementById("results-note").textContent = `${plural(shownIds.size, "event")} shown${cursor ? " · more below" : ""}`;
    if (!page.data.length && cursor) document.getElementById("results-note").textContent += " (this stretch had no match: load more to keep searching)";
  } catch (error) {
    showError(error);
    if (!append) tbody.replaceChildren();
  } finally {
    loading = false;
  }
}

// New matching events go on top: the first page is read again and the unseen ones added.
let liveTimer = null;
function refreshTop() {
  clearTimeout(liveTimer);
  liveTimer = setTimeout(async () => {
    const filters = filtersFromUrl();
    if (filters.until && new Date(filters.until) < new Date()) return;
    try {
      const page = await fetchPage(filters, null, 50);
      const fresh = (page.data || []).filter((event) => !shownIds.has(event.id));
      if (!fresh.length) return;
      for (const event of fresh) shownIds.add(event.id);
      const rows = fresh.map(row);
      for (const node of rows) node.classList.add("fresh");
      tbody.prepend(...rows);
      document.getElementById("events-empty").hidden = true;
      document.getElementById("results-note").textContent = `${plural(shownIds.size, "event")} shown${cursor ? " · more below" : ""}`;
    } catch { /* the next message tries again */ }
  }, LIVE_REFRESH_MS);
}

function apply(filters, push = true) {
  const params = new URLSearchParams(filters);
  const url = `${window.location.pathname}${params.toString() ? `?${params}` : ""}`;
  if (push) history.pushState(null, "", url);
  fillForm(filters);
  search(false);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  apply(filtersFromForm());
});
document.getElementById("filters-reset").addEventListener("click", () => apply({}));
for (const button of document.querySelectorAll("[data-quick]")) {
  button.addEventListener("click", () => {
    const now = new Date();
    if (button.dataset.quick === "failed-24h") {
      apply({ status: "failed", since: new Date(now - 86400000).toISOString() });
    } else {
      const today = new Date(now.getFullYear(), now.getMonth(), now.getDate());
      apply({ since: new Date(today - 86400000).toISOString(), until: today.toISOString() });
    }
  });
}
window.addEventListener("popstate", () => { fillForm(filtersFromUrl()); search(false); });
moreButton.addEventListener("click", () => search(true));
tbody.addEventListener("click", (event) => {
  const target = event.target.closest("[data-event]");
  if (target) inspector.open(target.dataset.event, event.target.closest("button") || target.querySelector("button"));
});

if (canWrite) {
  wireDialogs();
  document.getElementById("bulk-replay").addEventListener("click", async () => {
    const filters = filtersFromUrl();
    const body = { ...filters };
    if (body.filter) {
      try { body.filter = JSON.parse(body.filter); } catch { showError(new Error("filter: not valid JSON")); return; }
    }
    try {
      const dry = await api("POST", "/events/replay?dry_run=true", body);
      if (!dry.count) { toast("No event matches these filters: nothing to replay"); return; }
      const ok = await confirmAction(`Replay ${plural(dry.count, "event")} to every endpoint that wants ${dry.count === 1 ? "it" : "them"} now? Each gets new deliveries.`, "Replay");
      if (!ok) return;
      const answer = await api("POST", "/events/replay", body);
      toast(`Replaying ${plural(answer.count, "event")}: ${plural(answer.deliveries ?? 0, "new delivery", "new deliveries")}`);
    } catch (error) {
      if (error instanceof ApiError && error.status === 422) showError(error);
      else reportError(error, "Could not replay");
    }
  });
}

connectLive({
  onState: setConnectionState,
  onMessage: (message) => {
    inspector.onLive(message);
    if (message.type === "event.received" || (message.delivery && filtersFromUrl().status)) refreshTop();
  },
});
fillForm(filtersFromUrl());
search(false);
inspector.openFromHash();
