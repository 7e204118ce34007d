// Shared by the dashboard pages: the admin API with the session, DOM helpers, the live socket.
// Everything data-driven is put in the page with textContent, never as HTML.

const body = document.body;
export const canWrite = body.dataset.canWrite === "true";
const csrfHeader = body.dataset.csrfHeader || "X-Relay-CSRF";
const csrfValue = body.dataset.csrf || "";

export const UNREACHABLE = "Relay is not reachable, retrying…";

export class ApiError extends Error {
  constructor(status, detail, errors) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.errors = errors || [];
  }

  // field → message: the API's `errors` list, else the `field: message` form of `detail`.
  fieldErrors() {
    const found = new Map();
    for (const error of this.errors) {
      if (error && error.field) found.set(String(error.field), String(error.message || "invalid"));
    }
    if (!found.size && this.status === 422) {
      for (const part of this.message.split("; ")) {
        const match = /^([A-Za-z_][\w.$]*): (.+)$/s.exec(part);
        if (match) found.set(match[1], match[2]);
      }
    }
    return found;
  }
}

export async function api(method, path, payload) {
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin" };
  if (method !== "GET") {
    headers[csrfHeader] = csrfValue;
    if (payload !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
  }
  let response;
  try {
    response = await fetch(`/api/v1${path}`, init);
  } catch {
    setConnectionState("offline");
    throw new ApiError(0, UNREACHABLE);
  }
  let data = null;
  if (response.status !== 204) {
    try { data = await response.json(); } catch { data = null; }
  }
  if (response.status === 401) {
    window.location.assign("/dashboard/login");
  }
  if (!response.ok) {
    if (response.status >= 502 && response.status <= 504 && !(data && data.detail)) {
      throw new ApiError(response.status, UNREACHABLE);
    }
    throw new ApiError(response.status, data && data.detail, data && data.errors);
  }
  return data;
}

// h("td", {class: "num"}, "text", childNode, ...): an element; strings become text nodes.
export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function toast(text, kind = "info") {
  const box = document.getElementById("toasts");
  if (!box) return;
  const item = h("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status" }, text);
  box.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 7000 : 3500);
}

export function reportError(error, what) {
  const detail = error instanceof ApiError ? error.message : String(error && error.message || error);
  toast(`${what}: ${detail}`, "error");
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

export function clock(iso) {
  const t = iso ? new Date(iso) : new Date();
  if (Number.isNaN(t.getTime())) return "";
  return `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}.${pad(t.getMilliseconds(), 3)}`;
}

// One time format everywhere: local time, 24-hour, the date when it is not today.
export function when(iso) {
  if (!iso) return "–";
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return iso;
  const time = `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}`;
  const now = new Date();
  if (t.toDateString() === now.toDateString()) return time;
  return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())} ${time}`;
}

// "1 attempt", "2 attempts"; irregular plurals given: plural(n, "delivery", "deliveries").
export function plural(count, one, many = `${one}s`) {
  return `${count} ${count === 1 ? one : many}`;
}

// <input type="datetime-local"> value ↔ ISO 8601 (UTC).
export function localInput(iso) {
  if (!iso) return "";
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return "";
  return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())}T${pad(t.getHours())}:${pad(t.getMinutes())}`;
}

export function fromLocalInput(value) {
  if (!value) return "";
  const t = new Date(value);
  return Number.isNaN(t.getTime()) ? "" : t.toISOString();
}

export function ms(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return value >= 100 ? `${Math.round(value)} ms` : `${Number(value).toFixed(1)} ms`;
}

export function percent(rate) {
  if (rate === null || rate === undefined || Number.isNaN(rate)) return "–";
  const p = rate * 100;
  return p === 100 || p === 0 ? `${p}%` : `${p.toFixed(1)}%`;
}

export function bytes(size) {
  if (size === null || size === undefined) return "–";
  if (size < 1024) return `${size} B`;
  if (size < 1024 * 1024) return `${(size / 1024).toFixed(1)} KiB`;
  return `${(size / 1024 / 1024).toFixed(1)} MiB`;
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    toast("Copied");
  } catch {
    toast("Copy failed: select the text and copy it", "error");
  }
}

// The live stream: reconnects with backoff; re-sends the current subscription after each connect.
export function connectLive({ onMessage, onDropped, onState }) {
  let socket = null;
  let delay = 500;
  let subscription = null;

  function open() {
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${window.location.host}/ws/live`);
    socket.addEventListener("open", () => {
      delay = 500;
      onState("live");
      if (subscription) socket.send(JSON.stringify(subscription));
    });
    socket.addEventListener("message", (frame) => {
      let message;
      try { message = JSON.parse(frame.data); } catch { return; }
      if (message.type === "batch") {
        if (message.dropped && onDropped) onDropped(message.dropped);
        for (const item of message.items || []) onMessage(item);
      } else {
        onMessage(message);
      }
    });
    socket.addEventListener("close", (event) => {
      if (event.code === 4401) {
        window.location.assign("/dashboard/login");
        return;
      }
      onState("offline");
      setTimeout(open, delay);
      delay = Math.min(delay * 2, 10000);
    });
  }

  open();
  return {
    subscribe(next) {
      subscription = { type: "subscribe", ...next };
      if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(subscription));
    },
  };
}

export function setConnectionState(state) {
  const badge = document.getElementById("connection");
  if (!badge) return;
  badge.dataset.state = state;
  badge.textContent = { live: "live", offline: UNREACHABLE, connecting: "connecting…" }[state] || state;
}

// Close buttons inside <dialog>s and focus return.
export function wireDialogs() {
  for (const dialog of document.querySelectorAll("dialog")) {
    for (const button of dialog.querySelectorAll("[data-close]")) {
      button.addEventListener("click", () => dialog.close());
    }
  }
}

// A confirmation in the page's #confirm-dialog; resolves true when confirmed.
export function confirmAction(text, okLabel = "Confirm") {
  const dialog = document.getElementById("confirm-dialog");
  if (!dialog) return Promise.resolve(window.confirm(text));
  document.getElementById("confirm-text").textContent = text;
  const ok = document.getElementById("confirm-ok");
  ok.textContent = okLabel;
  return new Promise((resolve) => {
    let confirmed = false;
    const onOk = () => { confirmed = true; dialog.close(); };
    ok.addEventListener("click", onOk);
    dialog.addEventListener("close", () => {
      ok.removeEventListener("click", onOk);
      resolve(confirmed);
    }, { once: true });
    dialog.showModal();
  });
}

export const splitList = (text) => text.split(/[\s,]+/).map((part) => part.trim()).filter(Boolean);
