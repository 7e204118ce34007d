// The sources page: each source's ingest URL and the requests it refused, with the reason.
import { api, bytes, connectLive, copyText, h, reportError, setConnectionState, when } from "./common.js";

const REJECTED_SHOWN = 20;
const container = document.getElementById("sources");
const sections = new Map();
const refreshTimers = new Map();

function rejectedView(rows) {
  if (!rows.length) return h("p", { class: "muted" }, "No refused requests in the last 7 days.");
  return h("div", { class: "table-wrap" }, h("table", { class: "table rejected" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "When"), h("th", { scope: "col" }, "Reason"),
      h("th", { scope: "col", class: "num" }, "Size"), h("th", { scope: "col" }, "Request"))),
    h("tbody", {}, ...rows.map((row) => h("tr", {},
      h("td", {}, when(row.received_at)),
      h("td", {}, row.reason),
      h("td", { class: "num" }, bytes(row.size)),
      h("td", {}, h("details", {},
        h("summary", {}, "headers and body"),
        h("dl", { class: "kv" }, ...Object.entries(row.headers || {}).flatMap(([name, value]) => [h("dt", {}, name), h("dd", {}, value)])),
        h("pre", { class: "body" }, row.body_preview || "(empty body)"))))))));
}

async function loadRejected(source) {
  const section = sections.get(source.slug);
  if (!section) return;
  const target = section.querySelector(".rejected");
  try {
    const page = await api("GET", `/sources/${encodeURIComponent(source.id)}/rejected?limit=${REJECTED_SHOWN}`);
    target.replaceChildren(h("h3", {}, "Refused requests"), rejectedView(page.data || []));
  } catch (error) {
    target.replaceChildren(h("p", { class: "error" }, `Could not load refused requests: ${error.message}`));
  }
}

function sourceView(source) {
  const kind = source.verification ? source.verification.kind : "none";
  return h("section", { class: "card source", dataset: { source: source.slug }, "aria-labelledby": `source-${source.id}` },
    h("div", { class: "source-head" },
      h("h2", { id: `source-${source.id}` }, source.name || source.slug),
      h("span", { class: "mono muted" }, source.slug),
      h("span", { class: `badge ${source.enabled ? "badge-ok" : "badge-bad"}` }, source.enabled ? "enabled" : "disabled"),
      h("span", { class: "badge badge-info" }, `verification: ${kind}`)),
    h("div", { class: "ingest-url" },
      h("span", { class: "muted" }, "Ingest URL"),
      h("code", {}, source.ingest_url),
      h("button", { type: "button", class: "button-small", onclick: () => copyText(source.ingest_url) }, "Copy")),
    h("div", { class: "rejected" }, h("p", { class: "muted" }, "Loading refused requests…")));
}

async function load() {
  let sources;
  try {
    sources = (await api("GET", "/sources?limit=250")).data || [];
  } catch (error) {
    container.replaceChildren(h("p", { class: "error" }, `Could not load sources: ${error.message}`));
    reportError(error, "Sources");
    return;
  }
  if (!sources.length) {
    container.replaceChildren(h("div", { class: "card" },
      h("p", {}, "No sources yet. Create one with the API, for example:"),
      h("pre", { class: "body" }, `curl -X POST ${window.location.origin}/api/v1/sources \\\n  -H "Authorization: Bearer $RELAY_TOKEN" -H "Content-Type: application/json" \\\n  -d '{"slug": "demo", "name": "Demo"}'`)));
    return;
  }
  sections.clear();
  container.replaceChildren(...sources.map((source) => {
    const view = sourceView(source);
    sections.set(source.slug, view);
    return view;
  }));
  const bySlug = new Map(sources.map((source) => [source.slug, source]));
  await Promise.all(sources.map(loadRejected));
  return bySlug;
}

load().then((bySlug) => {
  connectLive({
    onState: setConnectionState,
    onMessage: (message) => {
      if (message.type !== "ingest.rejected" || !bySlug || !bySlug.has(message.source)) return;
      clearTimeout(refreshTimers.get(message.source));
      refreshTimers.set(message.source, setTimeout(() => loadRejected(bySlug.get(message.source)), 500));
    },
  }).subscribe({ types: ["ingest.rejected"] });
});
