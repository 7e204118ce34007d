// The sources page: each source's ingest URL and the requests it refused, with the reason;
// admins create, edit and delete sources.
import {
  ApiError, api, bytes, canWrite, confirmAction, connectLive, copyText, h, plural, reportError,
  setConnectionState, toast, when, wireDialogs,
} from "./common.js";
import { showFieldError } from "./endpoint-form.js";

const REJECTED_PAGE = 20;
const container = document.getElementById("sources");
const sections = new Map();
const refreshTimers = new Map();
const rejected = new Map();

function rejectedRows(rows) {
  return rows.map((row) => h("tr", {},
    h("td", { class: "nowrap" }, when(row.received_at)),
    h("td", {}, row.reason),
    h("td", { class: "num" }, bytes(row.size)),
    h("td", {}, h("details", {},
      h("summary", {}, "headers and body"),
      h("dl", { class: "kv" }, ...Object.entries(row.headers || {}).flatMap(([name, value]) => [h("dt", {}, name), h("dd", {}, value)])),
      h("pre", { class: "body" }, row.body_preview || "(empty body)")))));
}

function rejectedView(source) {
  const state = rejected.get(source.slug);
  if (!state.rows.length) return [h("h3", {}, "Refused requests"), h("p", { class: "muted" }, "No refused requests in the last 7 days.")];
  return [
    h("h3", {}, "Refused requests ", h("span", { class: "muted count" }, `${plural(state.rows.length, "request")} shown${state.cursor ? "; there are more" : ", all of the last 7 days"}`)),
    h("div", { class: "table-wrap" }, h("table", { class: "table rejected" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "When"), h("th", { scope: "col" }, "Reason"),
        h("th", { scope: "col", class: "num" }, "Size"), h("th", { scope: "col" }, "Request"))),
      h("tbody", {}, ...rejectedRows(state.rows)))),
    state.cursor ? h("button", { type: "button", class: "button-small more", onclick: () => loadRejected(source, true) }, `Show ${REJECTED_PAGE} more`) : null,
  ];
}

async function loadRejected(source, more = false) {
  const section = sections.get(source.slug);
  if (!section) return;
  const target = section.querySelector(".rejected");
  const state = more ? rejected.get(source.slug) : { rows: [], cursor: null };
  try {
    const params = new URLSearchParams({ limit: String(REJECTED_PAGE) });
    if (more && state.cursor) params.set("cursor", state.cursor);
    const page = await api("GET", `/sources/${encodeURIComponent(source.id)}/rejected?${params}`);
    rejected.set(source.slug, { rows: state.rows.concat(page.data || []), cursor: page.next_cursor });
    target.replaceChildren(...rejectedView(source).filter(Boolean));
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
      h("span", { class: "badge badge-info" }, `verification: ${kind}`),
      h("a", { href: `/dashboard/events?source=${encodeURIComponent(source.slug)}` }, "events →"),
      canWrite ? h("span", { class: "actions source-actions" },
        h("button", { type: "button", class: "button-small action", onclick: () => openSourceForm(source) }, "Edit"),
        h("button", { type: "button", class: "button-small action danger-text", onclick: () => deleteSource(source) }, "Delete")) : null),
    h("div", { class: "ingest-url" },
      h("span", { class: "muted" }, "Ingest URL"),
      h("code", {}, source.ingest_url),
      h("button", { type: "button", class: "button-small", onclick: () => copyText(source.ingest_url) }, "Copy")),
    h("div", { class: "rejected" }, h("p", { class: "muted" }, "Loading refused requests…")));
}

let bySlug = new Map();

async function load() {
  let sources;
  try {
    sources = (await api("GET", "/sources?limit=250")).data || [];
  } catch (error) {
    container.replaceChildren(h("p", { class: "error" }, `Could not load sources: ${error.message}`));
    reportError(error, "Sources");
    return;
  }
  bySlug = new Map(sources.map((source) => [source.slug, source]));
  if (!sources.length) {
    container.replaceChildren(h("div", { class: "card" },
      h("p", {}, canWrite ? "No sources yet: create one with “New source”, or with the API:" : "No sources yet. Create one with the API, for example:"),
      h("pre", { class: "body" }, `curl -X POST ${window.location.origin}/api/v1/sources \\\n  -H "Authorization: Bearer $RELAY_TOKEN" -H "Content-Type: application/json" \\\n  -d '{"slug": "demo", "name": "Demo"}'`)));
    return;
  }
  sections.clear();
  container.replaceChildren(...sources.map((source) => {
    const view = sourceView(source);
    sections.set(source.slug, view);
    return view;
  }));
  await Promise.all(sources.map((source) => loadRejected(source)));
}

// --- editing ----------------------------------------------------------------------------------

const form = document.getElementById("source-form");
let editing = null;

function showKindFields() {
  const kind = form.elements.kind.value;
  for (const node of form.querySelectorAll("[data-kinds]")) node.hidden = !node.dataset.kinds.split(" ").includes(kind);
  const note = document.getElementById("src-secret-note");
  note.textContent = editing && editing.verification.kind !== "none" ? "(empty = keep the current one)" : kind === "standard_webhooks" ? "(whsec_…)" : "";
}

const ruleText = (rule) => (!rule ? "" : rule.header ? rule.header : `$.${rule.json_path}`);
const ruleOf = (text) => {
  const value = text.trim();
  if (!value) return null;
  return value.startsWith("$.") ? { json_path: value.slice(2) } : { header: value };
};

function clearErrors() {
  for (const node of form.querySelectorAll(".field-error")) node.remove();
  for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  document.getElementById("source-error").hidden = true;
  document.getElementById("source-error").textContent = "";
}

function openSourceForm(source) {
  editing = source || null;
  form.reset();
  clearErrors();
  const { elements } = form;
  document.getElementById("source-dialog-title").textContent = source ? `Edit ${source.slug}` : "New source";
  document.getElementById("source-submit").textContent = source ? "Save" : "Create";
  if (source) {
    const v = source.verification || {};
    elements.slug.value = source.slug;
    elements.name.value = source.name || "";
    elements.kind.value = v.kind || "none";
    elements.header.value = v.header || "";
    elements.query_param.value = v.query_param || "";
    if (v.algorithm) elements.algorithm.value = v.algorithm;
    if (v.encoding) elements.encoding.value = v.encoding;
    elements.prefix.value = v.prefix || "";
    elements.tolerance_seconds.value = v.tolerance_seconds ?? "";
    elements.dedup.value = ruleText(source.dedup);
    elements.event_type.value = ruleText(source.event_type);
    elements.max_body_bytes.value = source.max_body_bytes ?? "";
    elements.enabled.checked = source.enabled;
  }
  showKindFields();
  document.getElementById("source-dialog").showModal();
}

function payloadOf() {
  const { elements } = form;
  const kind = elements.kind.value;
  const verification = { kind };
  const visible = (name) => !form.querySelector(`[data-field="verification.${name}"]`).hidden;
  if (elements.secret.value) verification.secret = elements.secret.value;
  for (const name of ["header", "query_param", "prefix"]) if (visible(name) && elements[name].value.trim()) verification[name] = elements[name].value.trim();
  for (const name of ["algorithm", "encoding"]) if (visible(name)) verification[name] = elements[name].value;
  if (visible("tolerance_seconds") && elements.tolerance_seconds.value.trim()) verification.tolerance_seconds = Number(elements.tolerance_seconds.value);
  const payload = {
    slug: elements.slug.value.trim(),
    name: elements.name.value.trim(),
    enabled: elements.enabled.checked,
    verification,
    dedup: ruleOf(elements.dedup.value),
    event_type: ruleOf(elements.event_type.value),
    max_body_bytes: elements.max_body_bytes.value.trim() ? Number(elements.max_body_bytes.value) : null,
  };
  return payload;
}

async function deleteSource(source) {
  if (!(await confirmAction(`Delete the source ${source.slug}? Its ingest URL stops accepting webhooks (404); stored events stay.`, "Delete"))) return;
  try {
    await api("DELETE", `/sources/${encodeURIComponent(source.id)}`);
    toast(`Source ${source.slug} deleted`);
    await load();
  } catch (error) {
    reportError(error, "Could not delete");
  }
}

if (canWrite) {
  wireDialogs();
  document.getElementById("new-source").addEventListener("click", () => openSourceForm(null));
  form.elements.kind.addEventListener("change", showKindFields);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    const general = document.getElementById("source-error");
    try {
      const payload = payloadOf();
      if (editing) await api("PATCH", `/sources/${encodeURIComponent(editing.id)}`, payload);
      else await api("POST", "/sources", payload);
      document.getElementById("source-dialog").close();
      toast(editing ? "Source saved" : "Source created");
      await load();
    } catch (problem) {
      if (!(problem instanceof ApiError)) throw problem;
      const fields = problem.fieldErrors();
      if (!fields.size) { general.textContent = problem.message; general.hidden = false; return; }
      for (const [name, message] of fields) showFieldError(form, name, message, general);
    }
  });
}

load().then(() => {
  connectLive({
    onState: setConnectionState,
    onMessage: (message) => {
      if (message.type !== "ingest.rejected" || !bySlug.has(message.source)) return;
      clearTimeout(refreshTimers.get(message.source));
      refreshTimers.set(message.source, setTimeout(() => loadRejected(bySlug.get(message.source)), 500));
    },
  }).subscribe({ types: ["ingest.rejected"] });
});
