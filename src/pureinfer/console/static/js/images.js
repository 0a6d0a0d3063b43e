// The playground's image form and gallery. An image is generated as a job (`POST /jobs`, type
// image) whose progress arrives over `GET /jobs/{id}/events`; a gateway that runs no image jobs
// (no jobs API, or no image service behind it) is asked synchronously (`POST /generate-image`). Images come back as base64 PNG (data: URLs, allowed
// by the page's CSP), so "download PNG" needs no second request.
import { api, ApiError, el, fail, request, sseEvents, status } from "./api.js";

const $ = (id) => document.getElementById(id);
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
let currentJob = null;

function imageBody(form) {
  const f = form.elements;
  const body = { prompt: f.prompt.value, output: "b64_json", truncate: f.truncate.checked };
  if (f.negative_prompt.value.trim()) body.negative_prompt = f.negative_prompt.value.trim();
  for (const name of ["width", "height", "steps", "seed", "num_images"]) {
    if (f[name].value !== "") body[name] = parseInt(f[name].value, 10);
  }
  if (f.cfg_scale.value !== "") body.cfg_scale = Number(f.cfg_scale.value);
  return body;
}

function showProgress(step, total, text) {
  $("image-progress").hidden = false;
  const bar = $("image-progress-bar");
  bar.max = total || 1;
  bar.value = step || 0;
  $("image-progress-text").textContent = text;
}

function addToGallery(result, params) {
  const images = result.images || [];
  images.forEach((img, i) => {
    const src = img.b64_json ? `data:image/png;base64,${img.b64_json}` : img.url;
    const seed = img.seed ?? (params.seed !== undefined ? params.seed + i : "?");
    const caption = `seed ${seed} · ${img.width}×${img.height} · ${result.steps ?? params.steps} steps · cfg ${result.cfg_scale ?? params.cfg_scale}`;
    const reuse = el("button", { type: "button", class: "secondary", text: "Reuse seed",
      onclick: () => { $("image-seed").value = seed; $("image-prompt").value = params.prompt; $("image-seed").focus(); } });
    const download = el("a", { class: "button secondary", href: src, download: `pureinfer-${seed}.png`, text: "Download PNG" });
    $("gallery").prepend(el("li", { "data-seed": seed },
      el("figure", {}, el("img", { src, alt: `Generated image for: ${params.prompt}`, width: img.width, height: img.height }),
        el("figcaption", {}, el("span", { class: "seed", text: caption }), el("span", { class: "prompt", title: params.prompt, text: params.prompt }))),
      el("div", { class: "actions" }, reuse, download)));
  });
}

function noImageJobs(status, body) {
  if (status === 404 || status === 405) return true;
  const fields = (body && body.details && body.details.fields) || [];
  return status === 400 && fields.some((f) => f.field === "type");
}

async function followJob(jobId) {
  // Progress over SSE; each event carries the job's state (status, progress, result or error).
  const r = await request("GET", `/jobs/${encodeURIComponent(jobId)}/events`);
  if (r.ok && r.body) {
    for await (const ev of sseEvents(r)) {
      const job = ev.job || ev;
      const p = job.progress || {};
      if (job.status) showProgress(p.step, p.total, `${job.status}${p.total ? ` — step ${p.step} of ${p.total}` : ""}`);
      if (TERMINAL.has(job.status)) break;
    }
  }
  return api("GET", `/jobs/${encodeURIComponent(jobId)}`);
}

async function generate(form) {
  const params = imageBody(form);
  $("image-generate").disabled = true;
  showProgress(0, params.steps, "queued");
  status("Generating…");
  try {
    let result;
    const submitted = await request("POST", "/jobs", { type: "image", params });
    const data = submitted.status === 404 || submitted.status === 405 ? null : await submitted.json();
    if (!submitted.ok && !noImageJobs(submitted.status, data)) throw new ApiError(submitted.status, data);
    if (!submitted.ok) {
      showProgress(0, params.steps, "running (this gateway runs no image jobs: one request)");
      result = await api("POST", "/generate-image", params);
    } else {
      currentJob = data.job_id;
      $("image-cancel").hidden = false;
      const job = await followJob(currentJob);
      if (job.status !== "succeeded") {
        status(`Job ${job.status}${job.error ? `: ${job.error.error_code} ${job.error.error}` : ""}`, job.status === "cancelled" ? "info" : "error");
        showProgress(0, 1, job.status);
        return;
      }
      result = job.result;
    }
    showProgress(1, 1, "done");
    addToGallery(result, params);
    status(`Generated ${(result.images || []).length} image(s)`);
  } catch (err) {
    fail(err);
  } finally {
    currentJob = null;
    $("image-cancel").hidden = true;
    $("image-generate").disabled = false;
  }
}

export function useEnhanced(text) {
  $("image-prompt").value = text;
  $("image-form").requestSubmit();
}

export function initImages() {
  const form = $("image-form");
  form.addEventListener("submit", (event) => { event.preventDefault(); generate(form); });
  $("image-cancel").hidden = true;
  $("image-cancel").addEventListener("click", async () => {
    if (!currentJob) return;
    try { await api("POST", `/jobs/${encodeURIComponent(currentJob)}/cancel`); status("Cancelling…"); } catch (err) { fail(err); }
  });
}
