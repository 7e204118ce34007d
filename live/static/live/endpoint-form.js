// Create and edit an endpoint in #endpoint-dialog: every field of the API, its validation
// errors shown beside the field they name.
import { ApiError, api, copyText, h, splitList } from "./common.js";

const form = () => document.getElementById("endpoint-form");

function jsonText(value) {
  return value === null || value === undefined || (typeof value === "object" && !Array.isArray(value) && !Object.keys(value).length)
    ? "" : JSON.stringify(value, null, 2);
}

function clearErrors() {
  for (const node of form().querySelectorAll(".field-error")) node.remove();
  for (const node of form().querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  const general = document.getElementById("endpoint-error");
  general.hidden = true;
  general.textContent = "";
}

// Show `message` under the field `name` (or, when no such field, in the general slot).
export function showFieldError(container, name, message, general) {
  const top = String(name).split(".")[0];
  const field = container.querySelector(`.field[data-field="${CSS.escape(String(name))}"]:not([hidden])`)
    || container.querySelector(`.field[data-field="${CSS.escape(top)}"]:not([hidden])`);
  if (!field) {
    general.hidden = false;
    general.textContent = general.textContent ? `${general.textContent}; ${name}: ${message}` : `${name}: ${message}`;
    return;
  }
  const input = field.querySelector("input, textarea, select");
  if (input) input.setAttribute("aria-invalid", "true");
  const id = `${input ? input.id : top}-error`;
  const note = h("p", { class: "field-error", id, role: "alert" }, message);
  if (input) input.setAttribute("aria-describedby", id);
  field.append(note);
}

class LocalError extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

function parseJson(name, text, kind) {
  if (!text.trim()) return null;
  let value;
  try { value = JSON.parse(text); } catch { throw new LocalError(name, "not valid JSON"); }
  if (kind === "object" && (typeof value !== "object" || value === null || Array.isArray(value))) {
    throw new LocalError(name, "must be a JSON object");
  }
  return value;
}

function numberOrNull(name, text, integer) {
  if (!text.trim()) return null;
  const value = Number(text);
  if (!Number.isFinite(value) || (integer && !Number.isInteger(value))) throw new LocalError(name, integer ? "must be a whole number" : "must be a number");
  return value;
}

function payloadOf(elements, editing) {
  const payload = {
    url: elements.url.value.trim(),
    description: elements.description.value.trim(),
    event_types: splitList(elements.event_types.value),
    sources: splitList(elements.sources.value),
    filter: parseJson("filter", elements.filter.value, "object"),
    headers: parseJson("headers", elements.headers.value, "object") || {},
    retry_schedule: elements.retry_schedule.value.trim()
      ? splitList(elements.retry_schedule.value).map((part) => {
        const value = Number(part);
        if (!Number.isFinite(value)) throw new LocalError("retry_schedule", `${part} is not a number of seconds`);
        return value;
      }) : null,
    timeout_seconds: numberOrNull("timeout_seconds", elements.timeout_seconds.value, false),
    rate_limit_per_second: numberOrNull("rate_limit_per_second", elements.rate_limit_per_second.value, false),
  };
  const inFlight = numberOrNull("max_in_flight", elements.max_in_flight.value, true);
  if (inFlight !== null || !editing) payload.max_in_flight = inFlight ?? 10;
  if (!form().querySelector("[data-field=kind]").hidden) payload.kind = elements.kind.value;
  if (!form().querySelector("[data-field=template]").hidden) payload.template = parseJson("template", elements.template.value, "object");
  return payload;
}

let editing = null;
let onSaved = () => {};

// The API answer tells which optional fields (kind, template) this server has.
function showOptional(sample) {
  for (const name of ["kind", "template"]) {
    form().querySelector(`[data-field=${name}]`).hidden = !(sample && name in sample);
  }
}

export function openEndpointForm(endpoint, sample) {
  const dialog = document.getElementById("endpoint-dialog");
  const { elements } = form();
  form().reset();
  clearErrors();
  editing = endpoint || null;
  showOptional(endpoint || sample);
  document.getElementById("endpoint-dialog-title").textContent = endpoint ? "Edit endpoint" : "New endpoint";
  document.getElementById("endpoint-submit").textContent = endpoint ? "Save" : "Create";
  if (endpoint) {
    elements.url.value = endpoint.url || "";
    elements.description.value = endpoint.description || "";
    elements.event_types.value = (endpoint.event_types || []).join(", ");
    elements.sources.value = (endpoint.sources || []).join(", ");
    elements.filter.value = jsonText(endpoint.filter);
    elements.headers.value = jsonText(endpoint.headers);
    elements.retry_schedule.value = (endpoint.retry_schedule || []).join(", ");
    elements.timeout_seconds.value = endpoint.timeout_seconds ?? "";
    elements.max_in_flight.value = endpoint.max_in_flight ?? "";
    elements.rate_limit_per_second.value = endpoint.rate_limit_per_second ?? "";
    if ("kind" in endpoint) elements.kind.value = endpoint.kind || "webhook";
    if ("template" in endpoint) elements.template.value = jsonText(endpoint.template);
  }
  dialog.showModal();
  elements.url.focus();
}

function showSecret(secret, text) {
  document.getElementById("secret-dialog-text").textContent = text;
  document.getElementById("secret-value").textContent = secret;
  document.getElementById("secret-dialog").showModal();
}

export { showSecret };

export function wireEndpointForm(saved) {
  onSaved = saved;
  const dialog = document.getElementById("endpoint-dialog");
  if (!dialog || dialog.dataset.wired) return;
  dialog.dataset.wired = "true";
  document.getElementById("secret-copy").addEventListener("click", () => copyText(document.getElementById("secret-value").textContent));
  form().addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    const general = document.getElementById("endpoint-error");
    let payload;
    try {
      payload = payloadOf(form().elements, Boolean(editing));
    } catch (problem) {
      if (problem instanceof LocalError) showFieldError(form(), problem.field, problem.message, general);
      else throw problem;
      return;
    }
    try {
      let answer;
      if (editing) {
        answer = await api("PATCH", `/endpoints/${encodeURIComponent(editing.id)}`, payload);
      } else {
        answer = await api("POST", "/endpoints", payload);
      }
      dialog.close();
      if (!editing && answer.secret) {
        showSecret(answer.secret, "The endpoint’s signing secret: give it to the endpoint’s owner now (it can be read again with GET /api/v1/endpoints/{id}/secret).");
      }
      await onSaved(answer, Boolean(editing));
    } catch (problem) {
      if (!(problem instanceof ApiError)) throw problem;
      const fields = problem.fieldErrors();
      if (!fields.size) {
        general.textContent = problem.message;
        general.hidden = false;
        return;
      }
      for (const [name, message] of fields) showFieldError(form(), name, message, general);
      const first = form().querySelector("[aria-invalid=true]");
      if (first) first.focus();
    }
  });
}
