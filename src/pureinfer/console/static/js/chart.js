// A small hand-written SVG line chart (no library): series of numbers over the same x buckets.
const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

// series: [{name, values: (number|null)[], cls}]; labels: x labels (same length as values).
export function lineChart(target, series, labels, unit = "") {
  const W = 400, H = 150, L = 40, R = 10, T = 10, B = 22;
  const all = series.flatMap((s) => s.values).filter((v) => v !== null && Number.isFinite(v));
  const max = niceMax(Math.max(0, ...all));
  const n = labels.length;
  const x = (i) => L + (n <= 1 ? 0 : (i * (W - L - R)) / (n - 1));
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart-svg" });
  const summary = series.map((s) => {
    const vals = s.values.filter((v) => v !== null);
    return `${s.name}: latest ${vals.length ? fmt(vals[vals.length - 1]) : "none"}${unit}, max ${vals.length ? fmt(Math.max(...vals)) : "none"}${unit}`;
  }).join("; ");
  root.append(svg("title", {}, summary));
  for (const frac of [0, 0.5, 1]) {
    const v = max * frac;
    root.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    root.append(svg("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end", class: "tick" }, fmt(v)));
  }
  for (const i of [0, Math.floor((n - 1) / 2), n - 1]) {
    const anchor = i === 0 ? "start" : i === n - 1 ? "end" : "middle";
    if (i >= 0) root.append(svg("text", { x: x(i), y: H - 6, "text-anchor": anchor, class: "tick" }, labels[i]));
  }
  for (const s of series) {
    let d = "";
    s.values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) return;
      d += `${d && s.values[i - 1] !== null ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
    });
    root.append(svg("path", { d: d || "M0,0", class: `line ${s.cls || ""}` }));
  }
  const legend = document.createElement("p");
  legend.className = "legend";
  legend.textContent = summary;
  target.replaceChildren(root, legend);
}

// The axis top: 1, 2 or 5 times a power of ten at or above the largest value (1 when all are 0).
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map((m) => m * p).find((m) => m >= v);
}

export function fmt(v) {
  if (!Number.isFinite(v)) return "—";
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(2).replace(/\.?0+$/, "") || "0";
}
