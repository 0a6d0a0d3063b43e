// The console's one door to the gateway: the same JSON API any client uses. The session cookie
// goes along by itself (HttpOnly: this script never sees it); every state-changing request adds
// the CSRF token the page was rendered with.

const csrfMeta = document.querySelector('meta[name="csrf-token"]');
export const csrfToken = csrfMeta ? csrfMeta.content : "";

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
  describe() {
    const b = this.body || {};
    const fields = (b.details && b.details.fields) || [];
    const named = fields.map((f) => `${f.field}: ${f.message}`).join("; ");
    return [b.error_code, b.error || this.message, named, b.request_id ? `request ${b.request_id}` : ""]
      .filter(Boolean).join(" — ");
  }
}

export function headers(method, json) {
  const h = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") h["X-CSRF-Token"] = csrfToken;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

export async function request(method, path, body) {
  const init = { method, headers: headers(method, body !== undefined), credentials: "same-origin" };
  if (body !== undefined) init.body = JSON.stringify(body);
  const r = await fetch(path, init);
  if (r.status === 401 && csrfToken) {
    location.assign(`/ui/login?next=${encodeURIComponent(location.pathname)}`);
  }
  return r;
}

export async function api(method, path, body) {
  const r = await request(method, path, body);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { error: text }; }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

// Server-Sent Events from a fetch response: yields each `data:` payload (parsed JSON) until [DONE].
export async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const frame = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      const data = frame.split(/\r?\n/).filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      yield JSON.parse(data);
    }
  }
}

// DOM building: text is always set as text (never parsed as HTML), so what a user or a model
// wrote shows as written.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function status(message, kind = "info") {
  const s = document.getElementById("status");
  if (!s) return;
  s.textContent = message;
  s.dataset.kind = kind;
}

export function fail(err) {
  status(err instanceof ApiError ? err.describe() : String(err), "error");
}

export function formValues(form) {
  const out = {};
  for (const [k, v] of new FormData(form).entries()) {
    if (typeof v === "string" && v.trim() !== "") out[k] = v.trim();
  }
  return out;
}

export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : d.toLocaleString();
}

export function meta(dl, pairs) {
  dl.replaceChildren();
  for (const [k, v] of pairs) {
    if (v === undefined || v === null || v === "") continue;
    dl.append(el("dt", { text: k }), el("dd", { text: typeof v === "object" ? JSON.stringify(v) : String(v) }));
  }
}

const signOut = document.getElementById("sign-out");
if (signOut) {
  signOut.addEventListener("click", async () => {
    try { await api("DELETE", "/session"); } catch (e) { /* signed out either way */ }
    location.assign("/ui/login");
  });
}
