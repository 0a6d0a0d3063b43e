// A line diff (longest common subsequence) laid out side by side: rows of [left, right, kind],
// kind one of same, changed, removed, added.
export function lineDiff(a, b) {
  const x = a.split("\n");
  const y = b.split("\n");
  const n = x.length;
  const m = y.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i][j] = x[i] === y[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const rows = [];
  let i = 0;
  let j = 0;
  const removed = [];
  const added = [];
  const flush = () => {
    const k = Math.max(removed.length, added.length);
    for (let t = 0; t < k; t++) {
      const l = removed[t];
      const r = added[t];
      rows.push([l ?? "", r ?? "", l !== undefined && r !== undefined ? "changed" : l !== undefined ? "removed" : "added"]);
    }
    removed.length = 0;
    added.length = 0;
  };
  while (i < n || j < m) {
    if (i < n && j < m && x[i] === y[j]) {
      flush();
      rows.push([x[i], y[j], "same"]);
      i++; j++;
    } else if (j < m && (i >= n || lcs[i][j + 1] >= lcs[i + 1][j])) {
      added.push(y[j++]);
    } else {
      removed.push(x[i++]);
    }
  }
  flush();
  return rows;
}
