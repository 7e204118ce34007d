// The notifications page: notification endpoints, the template editor with a live preview
// against a stored event, alerts and what they fired. Everything goes through the admin API.
import { api, canWrite, connectLive, h, reportError, setConnectionState, toast, when } from "./common.js";

const $ = (id) => document.getElementById(id);
const list = (text) => text.split(",").map((item) => item.trim()).filter(Boolean);
const URL_HINTS = {
  slack: ["(from the platform's incoming webhook settings)", "https://hooks.slack.com/services/…"],
  discord: ["(Server settings → Integrations → Webhooks)", "https://discord.com/api/webhooks/…"],
  teams: ["(a Teams Workflows “post to a channel when a webhook request is received” URL)", "https://….logic.azure.com/workflows/…"],
  email: ["(mailto: and the recipients, comma separated)", "mailto:ops@example.com,dev@example.com"],
  webhook: ["(any HTTPS endpoint)", "https://example.com/hooks/relay"],
};
let endpoints = [];

function kindHint() {
  const [hint, placeholder] = URL_HINTS[$("ep-kind").value];
  $("ep-url-hint").textContent = hint;
  $("ep-url").placeholder = placeholder;
}

async function createEndpoint(submit) {
  submit.preventDefault();
  const payload = {
    kind: $("ep-kind").value, url: $("ep-url").value.trim(),
    event_types: list($("ep-types").value), sources: list($("ep-sources").value),
    description: $("ep-description").value.trim(),
  };
  try {
    const created = await api("POST", "/endpoints", payload);
    $("ep-result").textContent = `Created ${created.id}.`;
    $("ep-result").dataset.endpoint = created.id;
    toast(`Endpoint ${created.id} created`);
    $("endpoint-form").reset();
    kindHint();
    await loadEndpoints(created.id);
  } catch (error) {
    $("ep-result").textContent = error.message;
    $("ep-result").className = "error";
  }
}

function endpointLabel(endpoint) {
  return `${endpoint.kind} · ${endpoint.description || endpoint.url} (${endpoint.id})`;
}

async function loadEndpoints(select) {
  endpoints = (await api("GET", "/endpoints?limit=250")).data || [];
  const options = () => endpoints.map((endpoint) => h("option", { value: endpoint.id }, endpointLabel(endpoint)));
  $("tpl-endpoint").replaceChildren(...options());
  $("al-notify").replaceChildren(...options());
  if (select) {
    $("tpl-endpoint").value = select;
    $("al-notify").value = select;
  }
  fillTemplate();
}

async function loadEvents() {
  const events = (await api("GET", "/events?limit=50")).data || [];
  $("tpl-event").replaceChildren(...events.map((event) =>
    h("option", { value: event.id }, `${event.event_type || "(no type)"} · ${event.source || "—"} · ${when(event.received_at)}`)));
}

function currentEndpoint() {
  return endpoints.find((endpoint) => endpoint.id === $("tpl-endpoint").value);
}

function fillTemplate() {
  const template = (currentEndpoint() || {}).template || {};
  $("tpl-title").value = template.title || "";
  $("tpl-text").value = template.text || "";
  $("tpl-body").value = template.body || "";
  $("tpl-fields").value = Object.entries(template.fields || {}).map(([name, value]) => `${name}: ${value}`).join("\n");
  schedulePreview();
}

function editedTemplate() {
  const template = {};
  for (const part of ["title", "text", "body"]) {
    const value = $(`tpl-${part}`).value;
    if (value.trim()) template[part] = value;
  }
  const fields = {};
  for (const line of $("tpl-fields").value.split("\n")) {
    const at = line.indexOf(":");
    if (at > 0) fields[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  if (Object.keys(fields).length) template.fields = fields;
  return Object.keys(template).length ? template : null;
}

let previewTimer = null;
let previewSeq = 0;
function schedulePreview() {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(preview, 250);
}

async function preview() {
  const endpoint = currentEndpoint();
  const eventId = $("tpl-event").value;
  if (!endpoint || !eventId) return;
  const seq = ++previewSeq;
  try {
    const answer = await api("POST", `/endpoints/${encodeURIComponent(endpoint.id)}/preview`,
      { event_id: eventId, template: editedTemplate(), use_template: true });
    if (seq !== previewSeq) return;
    const request = answer.request;
    let shown;
    if (request.subject !== undefined) {
      shown = `To: ${request.to.join(", ")}\nSubject: ${request.subject}\n\n${request.text}`;
    } else {
      let body = request.body;
      try { body = JSON.stringify(JSON.parse(body), null, 2); } catch { /* not JSON: as is */ }
      shown = `${request.method} ${request.url}\n${Object.entries(request.headers).map(([k, v]) => `${k}: ${v}`).join("\n")}\n\n${body}`;
    }
    $("tpl-error").hidden = true;
    $("tpl-preview").textContent = shown;
  } catch (error) {
    if (seq !== previewSeq) return;
    $("tpl-error").hidden = false;
    $("tpl-error").textContent = error.message;
  }
}

async function saveTemplate(submit) {
  submit.preventDefault();
  const endpoint = currentEndpoint();
  if (!endpoint) return;
  try {
    const saved = await api("PATCH", `/endpoints/${encodeURIComponent(endpoint.id)}`, { template: editedTemplate() });
    Object.assign(endpoint, saved);
    toast("Template saved");
  } catch (error) {
    $("tpl-error").hidden = false;
    $("tpl-error").textContent = error.message;
  }
}

function thresholdShown() {
  const type = $("al-type").value;
  const shown = type === "endpoint.failure_rate" || type === "source.rejections";
  $("al-threshold").hidden = !shown;
  $("al-above-hint").textContent = type === "source.rejections" ? "(refused requests in the window)" : "(a fraction, 0.5 = 50 %)";
  if (type === "source.rejections" && Number($("al-above").value) < 1) $("al-above").value = "10";
  if (type === "endpoint.failure_rate" && Number($("al-above").value) > 1) $("al-above").value = "0.5";
}

async function createAlert(submit) {
  submit.preventDefault();
  const condition = { type: $("al-type").value };
  if (!$("al-threshold").hidden) {
    condition.above = Number($("al-above").value);
    condition.window_seconds = Number($("al-window").value);
  }
  try {
    const alert = await api("POST", "/alerts", {
      name: $("al-name").value.trim(), conditions: [condition], notify: [$("al-notify").value],
      cooldown_seconds: Number($("al-cooldown").value),
    });
    $("al-result").textContent = `Created ${alert.id}.`;
    $("al-result").className = "muted";
    toast(`Alert ${alert.name} created`);
    await loadAlerts();
  } catch (error) {
    $("al-result").textContent = error.message;
    $("al-result").className = "error";
  }
}

async function loadAlerts() {
  const alerts = (await api("GET", "/alerts?limit=250")).data || [];
  $("alerts").replaceChildren(...(alerts.length ? alerts.map((alert) => h("li", { dataset: { alert: alert.id } },
    h("strong", { class: "grow" }, alert.name),
    h("span", { class: "muted" }, alert.conditions.map((c) => c.type).join(", ")),
    h("span", { class: "muted" }, `→ ${alert.notify.join(", ")}`),
    canWrite ? h("button", { type: "button", class: "button-small", onclick: () => deleteAlert(alert) }, "Delete") : null))
    : [h("li", { class: "muted" }, "No alerts yet.")]));
}

async function deleteAlert(alert) {
  try {
    await api("DELETE", `/alerts/${encodeURIComponent(alert.id)}`);
    await loadAlerts();
  } catch (error) {
    reportError(error, "Alert");
  }
}

async function loadFired() {
  const fired = (await api("GET", "/alerts/fired?limit=50")).data || [];
  $("fired").replaceChildren(...(fired.length ? fired.map((row) => h("li", {},
    h("span", { class: `badge ${row.firing ? "badge-bad" : "badge-ok"}` }, row.firing ? "firing" : "resolved"),
    h("strong", {}, row.alert_name),
    h("span", { class: "grow mono" }, row.subject),
    h("span", { class: "muted" }, when(row.last_fired_at))))
    : [h("li", { class: "muted" }, "Nothing fired.")]));
}

$("ep-kind").addEventListener("change", kindHint);
$("endpoint-form").addEventListener("submit", createEndpoint);
$("tpl-endpoint").addEventListener("change", fillTemplate);
$("tpl-event").addEventListener("change", schedulePreview);
for (const part of ["title", "text", "fields", "body"]) $(`tpl-${part}`).addEventListener("input", schedulePreview);
$("template-form").addEventListener("submit", saveTemplate);
$("tpl-reset").addEventListener("click", () => {
  for (const part of ["title", "text", "fields", "body"]) $(`tpl-${part}`).value = "";
  schedulePreview();
});
$("al-type").addEventListener("change", thresholdShown);
$("alert-form").addEventListener("submit", createAlert);
if (!canWrite) {
  for (const button of document.querySelectorAll("#ep-create, #tpl-save, #al-create")) button.disabled = true;
}
kindHint();

let refresh = null;
Promise.all([loadEvents(), loadEndpoints(), loadAlerts(), loadFired()]).catch((error) => reportError(error, "Notifications"));
connectLive({
  onState: setConnectionState,
  onMessage: (message) => {
    const event = message.event || {};
    if (message.type !== "event.received" || !String(event.event_type || "").startsWith("relay.alert.")) return;
    clearTimeout(refresh);
    refresh = setTimeout(() => loadFired().catch((error) => reportError(error, "Fired alerts")), 300);
  },
}).subscribe({ types: ["event.received"] });
