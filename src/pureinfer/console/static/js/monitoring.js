// Per-minute figures of the last hour from the gateway's own audit records (`GET /audit`):
// requests, error rate, latency p50/p95, tokens/s and images/min.
import { api, el, fail, status } from "./api.js";
import { fmt, lineChart } from "./chart.js";

const $ = (id) => document.getElementById(id);
const MINUTES = 60;

function quantile(sorted, q) {
  if (!sorted.length) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

async function records(since) {
  const out = [];
  for (let offset = 0; offset < 20000; offset += 1000) {
    const page = await api("GET", `/audit?since=${encodeURIComponent(since.toISOString())}&limit=1000&offset=${offset}`);
    out.push(...page.records);
    if (page.count < 1000) break;
  }
  return out;
}

async function refresh() {
  const now = Date.now();
  const start = now - MINUTES * 60_000;
  const rows = await records(new Date(start));
  const buckets = Array.from({ length: MINUTES }, () => ({ n: 0, errors: 0, lat: [], tokens: 0, images: 0 }));
  for (const r of rows) {
    const i = Math.floor((new Date(r.created_at).getTime() - start) / 60_000);
    if (i < 0 || i >= MINUTES) continue;
    const b = buckets[i];
    b.n++;
    if (r.status >= 400) b.errors++;
    b.lat.push(r.latency_ms);
    b.tokens += r.tokens_generated || 0;
    // image requests, direct or as jobs: the audit row says the worker type and the seeds drawn
    const isImage = r.worker_type === "image" || r.endpoint.includes("image");
    if (isImage && r.status < 400) b.images += Array.isArray(r.seeds) && r.seeds.length ? r.seeds.length : 1;
  }
  const labels = buckets.map((_, i) => {
    const t = new Date(start + (i + 1) * 60_000);
    return `${String(t.getHours()).padStart(2, "0")}:${String(t.getMinutes()).padStart(2, "0")}`;
  });
  const lat = buckets.map((b) => b.lat.sort((p, q) => p - q));
  lineChart($("c-requests"), [{ name: "requests/min", values: buckets.map((b) => b.n) }], labels);
  lineChart($("c-errors"), [{ name: "error rate", values: buckets.map((b) => (b.n ? (100 * b.errors) / b.n : null)), cls: "bad" }], labels, "%");
  lineChart($("c-latency"), [{ name: "p50", values: lat.map((l) => quantile(l, 0.5)) },
    { name: "p95", values: lat.map((l) => quantile(l, 0.95)), cls: "alt" }], labels, " ms");
  lineChart($("c-tokens"), [{ name: "tokens/s", values: buckets.map((b) => b.tokens / 60) }], labels);
  lineChart($("c-images"), [{ name: "images/min", values: buckets.map((b) => b.images) }], labels);
  const all = rows.map((r) => r.latency_ms).sort((p, q) => p - q);
  const errors = rows.filter((r) => r.status >= 400).length;
  const totals = [["requests", rows.length], ["errors", `${errors} (${rows.length ? fmt((100 * errors) / rows.length) : 0}%)`],
    ["latency p50", `${fmt(quantile(all, 0.5) ?? NaN)} ms`], ["latency p95", `${fmt(quantile(all, 0.95) ?? NaN)} ms`],
    ["tokens", rows.reduce((s, r) => s + (r.tokens_generated || 0), 0)]];
  $("mon-totals").replaceChildren(...totals.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
  status(`Updated ${new Date().toLocaleTimeString()}`);
}

$("mon-refresh").addEventListener("click", () => refresh().catch(fail));
refresh().catch(fail);
