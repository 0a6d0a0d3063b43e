import { api, ApiError, el, fail, meta, request, sseEvents, status } from "./api.js";
import { initImages, useEnhanced } from "./images.js";

const $ = (id) => document.getElementById(id);
const chatForm = $("chat-form");
const log = $("chat-log");
let history = [];
let families = [];

function served(family) {
  return family.versions.find((v) => v.version === family.served_version) || family.versions[family.versions.length - 1];
}

async function loadTemplates() {
  families = await api("GET", "/templates");
  const select = $("chat-template");
  for (const f of families) {
    const v = served(f);
    if (!v) continue;
    select.append(el("option", { value: f.template_name, text: `${f.template_name} (${v.job_type}/${v.target_model}/${v.use_case}, v${v.version})` }));
  }
  status(`Ready: ${families.length} templates`);
  const wanted = new URLSearchParams(location.search).get("template");
  if (wanted && families.some((f) => f.template_name === wanted)) {
    select.value = wanted;
    $("chat-message").focus();
  }
}

function chatBody() {
  const f = chatForm.elements;
  const body = { message: f.message.value, history: history.slice(), stream: true };
  for (const name of ["temperature", "top_p"]) if (f[name].value !== "") body[name] = Number(f[name].value);
  for (const name of ["max_tokens", "seed"]) if (f[name].value !== "") body[name] = parseInt(f[name].value, 10);
  const fam = families.find((x) => x.template_name === f.template.value);
  if (fam) {
    const v = served(fam);
    Object.assign(body, { target_model: v.target_model, job_type: v.job_type, use_case: v.use_case,
      content_mode: v.content_mode, enhancer_model: v.enhancer_model });
  }
  if (f.enhancer_model.value.trim()) body.enhancer_model = f.enhancer_model.value.trim();
  return body;
}

async function messagesSent(name, version, body) {
  // The gateway builds the messages as: the template version's system prompt, the history, the
  // message (gateway/prompting/protocol.py); the template version is the one it reported.
  const fam = await api("GET", `/templates/${encodeURIComponent(name)}`);
  const v = fam.versions.find((x) => x.version === version);
  return [{ role: "system", content: v ? v.system_prompt : "(unknown version)" }, ...body.history,
    { role: "user", content: body.message }];
}

chatForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = chatBody();
  const send = $("chat-send");
  send.disabled = true;
  log.append(el("li", { class: "user" }, el("span", { class: "who", text: "You" }), el("p", { text: body.message })));
  const answer = el("p", { class: "streaming", "aria-busy": "true" });
  const item = el("li", { class: "assistant" }, el("span", { class: "who", text: "Model" }), answer);
  log.append(item);
  status("Streaming…");
  const started = performance.now();
  let text = "";
  let final = null;
  try {
    const r = await request("POST", "/chat", body);
    if (!r.ok) {
      let data = null;
      try { data = await r.json(); } catch { /* not JSON */ }
      throw new ApiError(r.status, data);
    }
    const tName = r.headers.get("X-Template-Name");
    const tVersion = parseInt(r.headers.get("X-Template-Version") || "0", 10);
    const level = r.headers.get("X-Fallback-Level");
    for await (const ev of sseEvents(r)) {
      if (ev.error) throw new ApiError(ev.error.status || 500, ev.error);
      if (ev.text !== undefined && ev.prompt_sha256 === undefined) {
        text += ev.text;
        answer.textContent = text;
      } else {
        final = ev;
      }
    }
    const seconds = (performance.now() - started) / 1000;
    if (final) answer.textContent = final.response ?? text;
    answer.removeAttribute("aria-busy");
    answer.classList.remove("streaming");
    history.push({ role: "user", content: body.message }, { role: "assistant", content: answer.textContent });
    chatForm.elements.message.value = "";
    meta($("chat-meta"), [
      ["template", tName ? `${tName} v${tVersion}` : null],
      ["fallback level", level],
      ["worker", r.headers.get("X-Worker-Id")],
      ["request id", r.headers.get("X-Request-ID")],
      ["model", final && final.model_used],
      ["prompt tokens", final && final.prompt_tokens],
      ["tokens generated", final && final.tokens_generated],
      ["time", `${seconds.toFixed(2)} s (worker: ${final ? final.generation_time.toFixed(3) : "?"} s)`],
      ["seed", final && final.seed],
      ["prompt_sha256", final && final.prompt_sha256],
    ]);
    const rid = r.headers.get("X-Request-ID") || "";
    item.dataset.requestId = rid;
    $("chat-meta").append(el("dt", { text: "audit" }), el("dd", {},
      el("a", { href: `/ui/jobs?request_id=${encodeURIComponent(rid)}`, text: "find this request in the audit log" })));
    if (tName) $("chat-messages").textContent = JSON.stringify(await messagesSent(tName, tVersion, body), null, 2);
    status(`Done: ${final ? final.tokens_generated : "?"} tokens in ${seconds.toFixed(2)} s`);
  } catch (err) {
    item.remove();
    fail(err);
  } finally {
    send.disabled = false;
  }
});

$("chat-clear").addEventListener("click", () => {
  history = [];
  log.replaceChildren();
  status("New conversation");
});

$("enhance-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  status("Enhancing…");
  try {
    const body = { prompt: $("enhance-prompt").value };
    if ($("enhance-seed").value !== "") body.seed = parseInt($("enhance-seed").value, 10);
    const out = await api("POST", "/enhance-prompt", body);
    $("enhanced-text").textContent = out.enhanced_prompt;
    $("enhance-strategy").textContent = `(${out.strategy})`;
    $("enhance-result").hidden = false;
    status(`Enhanced by ${out.execution_metadata.template_name} v${out.execution_metadata.template_version}`);
  } catch (err) {
    fail(err);
  }
});

$("enhance-to-image").addEventListener("click", () => useEnhanced($("enhanced-text").textContent));

loadTemplates().catch(fail);
initImages();
