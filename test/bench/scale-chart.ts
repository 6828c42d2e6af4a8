/**
 * The chart of test/bench/scale.bench.ts: sync time against N on log-log axes, one line per side
 * (weft, flanneld, the kernel floors), as plain SVG text. A capped run is drawn at the cap with an
 * upward arrow and "> cap".
 */

export interface ChartPoint {
  readonly n: number;
  /** p50 in ms (the cap when capped). */
  readonly ms: number;
  readonly capped: boolean;
}

export interface ChartSeries {
  readonly name: string;
  readonly color: string;
  readonly dashed: boolean;
  readonly points: readonly ChartPoint[];
}

const W = 880;
const H = 484;
const LEFT = 78;
const RIGHT = 560;
const TOP = 84;
const BOTTOM = 414;

const xmlText = (s: string) =>
  s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;");

function msLabel(ms: number): string {
  if (ms >= 1_000) return `${(ms / 1_000).toLocaleString("en")} s`;
  if (ms >= 1) return `${ms.toLocaleString("en")} ms`;
  return `${(ms * 1_000).toLocaleString("en")} µs`;
}

/** Renders the chart; `title` and up to two `captions` lines (the revision, the machine) go above the plot. */
export function renderSyncChart(
  series: readonly ChartSeries[],
  title: string,
  captions: readonly string[],
): string {
  const points = series.flatMap((s) => s.points).filter((p) => p.ms > 0 && Number.isFinite(p.ms));
  const ns = [...new Set(points.map((p) => p.n))].sort((a, b) => a - b);
  const lo = ns[0] ?? 1_000;
  const hi = ns.at(-1) ?? lo;
  const xMin = Math.log10(lo) - (hi === lo ? 0.5 : 0.15);
  const xMax = Math.log10(hi) + (hi === lo ? 0.5 : 0.15);
  const msValues = points.map((p) => p.ms);
  const yMin = Math.floor(Math.log10(Math.min(...msValues, 10)));
  const yMax = Math.max(yMin + 1, Math.ceil(Math.log10(Math.max(...msValues, 100)) + 0.05));
  const x = (n: number) => LEFT + ((Math.log10(n) - xMin) / (xMax - xMin)) * (RIGHT - LEFT);
  const y = (ms: number) => BOTTOM - ((Math.log10(ms) - yMin) / (yMax - yMin)) * (BOTTOM - TOP);
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${LEFT}" y="26" font-size="15" font-weight="bold">${xmlText(title)}</text>`,
  );
  for (const [i, caption] of captions.slice(0, 2).entries()) {
    out.push(`<text x="${LEFT}" y="${46 + 16 * i}" fill="#555555">${xmlText(caption)}</text>`);
  }
  // Decades on the time axis, with 2× and 5× lines lighter.
  for (let d = yMin; d <= yMax; d++) {
    const ms = 10 ** d;
    out.push(
      `<line x1="${LEFT}" y1="${y(ms).toFixed(1)}" x2="${RIGHT}" y2="${y(ms).toFixed(1)}" stroke="#cccccc"/>`,
      `<text x="${LEFT - 8}" y="${(y(ms) + 4).toFixed(1)}" text-anchor="end">${xmlText(msLabel(ms))}</text>`,
    );
    for (const k of [2, 5]) {
      if (d === yMax) break;
      const minor = y(k * ms);
      out.push(
        `<line x1="${LEFT}" y1="${minor.toFixed(1)}" x2="${RIGHT}" y2="${minor.toFixed(1)}" stroke="#eeeeee"/>`,
      );
    }
  }
  for (const n of ns) {
    out.push(
      `<line x1="${x(n).toFixed(1)}" y1="${TOP}" x2="${x(n).toFixed(1)}" y2="${BOTTOM}" stroke="#dddddd"/>`,
      `<text x="${x(n).toFixed(1)}" y="${BOTTOM + 18}" text-anchor="middle">${n.toLocaleString("en")}</text>`,
    );
  }
  out.push(
    `<rect x="${LEFT}" y="${TOP}" width="${RIGHT - LEFT}" height="${BOTTOM - TOP}" fill="none" stroke="#888888"/>`,
    `<text x="${(LEFT + RIGHT) / 2}" y="${BOTTOM + 40}" text-anchor="middle">peer leases N (log scale)</text>`,
    `<text transform="translate(18 ${(TOP + BOTTOM) / 2}) rotate(-90)" text-anchor="middle">time to sync, p50 (log scale)</text>`,
  );
  for (const [i, s] of series.entries()) {
    const pts = [...s.points].filter((p) => p.ms > 0 && Number.isFinite(p.ms)).sort((a, b) => a.n - b.n);
    const dash = s.dashed ? ` stroke-dasharray="6 4"` : "";
    if (pts.length > 1) {
      const path = pts.map((p) => `${x(p.n).toFixed(1)},${y(p.ms).toFixed(1)}`).join(" ");
      out.push(`<polyline points="${path}" fill="none" stroke="${s.color}" stroke-width="2"${dash}/>`);
    }
    for (const p of pts) {
      const px = x(p.n);
      const py = y(p.ms);
      if (p.capped) {
        out.push(
          `<path d="M ${px.toFixed(1)} ${(py - 14).toFixed(1)} l -6 9 l 12 0 z" fill="${s.color}"/>`,
          `<line x1="${px.toFixed(1)}" y1="${(py - 6).toFixed(1)}" x2="${px.toFixed(1)}" y2="${py.toFixed(1)}" stroke="${s.color}" stroke-width="2"/>`,
          `<text x="${(px - 8).toFixed(1)}" y="${(py - 4).toFixed(1)}" text-anchor="end" fill="${s.color}">&gt; ${xmlText(msLabel(p.ms))}</text>`,
        );
      } else {
        out.push(`<circle cx="${px.toFixed(1)}" cy="${py.toFixed(1)}" r="4" fill="${s.color}"/>`);
      }
    }
    const ly = TOP + 10 + i * 24;
    out.push(
      `<line x1="${RIGHT + 18}" y1="${ly}" x2="${RIGHT + 48}" y2="${ly}" stroke="${s.color}" stroke-width="2"${dash}/>`,
      `<circle cx="${RIGHT + 33}" cy="${ly}" r="4" fill="${s.color}"/>`,
      `<text x="${RIGHT + 56}" y="${ly + 4}">${xmlText(s.name)}</text>`,
    );
  }
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}
