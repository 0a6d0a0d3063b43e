import { api, ApiError, el, fail, formValues, meta, request, sseEvents, status, when } from "./api.js";

const $ = (id) => document.getElementById(id);
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

async function loadJobs() {
  let page;
  try {
    page = await api("GET", "/jobs?limit=50");
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 405)) {
      $("jobs-note").textContent = "This gateway has no jobs API.";
      return;
    }
    throw err;
  }
  const jobs = Array.isArray(page) ? page : page.jobs || page.records || [];
  const body = $("job-table").tBodies[0];
  body.replaceChildren();
  for (const j of jobs) {
    const p = j.progress || {};
    const cancel = TERMINAL.has(j.status) ? null : el("button", { type: "button", class: "danger", text: "Cancel",
      "aria-label": `Cancel job ${j.job_id}`, onclick: async () => {
        try {
          await api("POST", `/jobs/${encodeURIComponent(j.job_id)}/cancel`);
          status(`Cancelling ${j.job_id}…`);
          const final = await untilFinished(j.job_id);
          await loadJobs();
          status(`Job ${j.job_id} ${final}`);
        } catch (err) { fail(err); }
      } });
    body.append(el("tr", { "data-job": j.job_id },
      el("th", { scope: "row", class: "mono", text: j.job_id }), el("td", { text: j.type }),
      el("td", {}, el("span", { class: `pill ${j.status}`, text: j.status })),
      el("td", {}, p.total ? el("progress", { max: p.total, value: p.step || 0, "aria-label": `Progress of ${j.job_id}` }) : "—"),
      el("td", { text: when(j.created_at) }), el("td", {}, cancel)));
  }
  $("jobs-note").textContent = jobs.length ? "" : "No jobs yet.";
}

// Follow a job's events (SSE) until it is finished; its final status.
async function untilFinished(jobId) {
  const r = await request("GET", `/jobs/${encodeURIComponent(jobId)}/events`);
  let last = "unknown";
  if (!r.ok) return last;
  for await (const job of sseEvents(r)) {
    last = job.status;
    if (TERMINAL.has(job.status)) break;
  }
  return last;
}

function isoOf(local) {
  return local ? new Date(local).toISOString() : undefined;
}

async function loadAudit() {
  const v = formValues($("audit-filters"));
  if (v.since) v.since = isoOf(v.since);
  if (v.until) v.until = isoOf(v.until);
  v.limit = "200";
  const page = await api("GET", `/audit?${new URLSearchParams(v)}`);
  const body = $("audit-table").tBodies[0];
  body.replaceChildren();
  for (const r of page.records) {
    body.append(el("tr", { class: r.status >= 400 ? "error" : "" },
      el("td", { text: when(r.created_at) }),
      el("th", { scope: "row" }, el("button", { type: "button", class: "link mono", text: r.request_id,
        "aria-label": `Details of request ${r.request_id}`, onclick: () => detail(r) })),
      el("td", { text: r.endpoint }), el("td", { text: r.error_code ? `${r.status} ${r.error_code}` : r.status }),
      el("td", { text: r.template_name ? `${r.template_name} v${r.template_version}` : "—" }),
      el("td", { class: "mono", text: r.worker_id || "—" }), el("td", { text: `${Math.round(r.latency_ms)} ms` }),
      el("td", { class: "clip", text: r.prompt_preview || "" })));
  }
  status(`${page.count} audit record(s)`);
  const wanted = new URLSearchParams(location.search).get("request_id");
  if (wanted && page.records.length === 1 && page.records[0].request_id === wanted) detail(page.records[0]);
}

function detail(r) {
  $("audit-detail").hidden = false;
  $("audit-detail-h").textContent = `Request ${r.request_id}`;
  meta($("audit-fields"), Object.entries(r));
  $("audit-detail").scrollIntoView({ block: "start" });
  $("audit-close").focus();
}

$("audit-filters").addEventListener("submit", (event) => { event.preventDefault(); loadAudit().catch(fail); });
$("audit-close").addEventListener("click", () => { $("audit-detail").hidden = true; });
$("jobs-refresh").addEventListener("click", () => loadJobs().catch(fail));
const rid = new URLSearchParams(location.search).get("request_id");
if (rid) $("a-request").value = rid;
loadJobs().catch(fail);
loadAudit().catch(fail);
