/**
 * Line charts as hand-written SVG (no chart library): one series per system.
 * @module
 */

/** One line. */
export interface Series {
  readonly name: string;
  readonly points: readonly (readonly [number, number])[];
}

const COLORS = ['#d62728', '#1f77b4', '#2ca02c', '#9467bd', '#8c564b', '#ff7f0e', '#17becf', '#7f7f7f'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function ticks(lo: number, hi: number, n = 5): number[] {
  const span = hi - lo || 1;
  const step = Math.pow(10, Math.floor(Math.log10(span / n)));
  const nice = [1, 2, 5, 10].map((m) => m * step).find((s) => span / s <= n) ?? step * 10;
  const out: number[] = [];
  for (let v = Math.ceil(lo / nice) * nice; v <= hi + 1e-9; v += nice) out.push(Number(v.toPrecision(6)));
  return out;
}

/** A line chart; `yMax` fixes the top (e.g. 1 for attainment). */
export function lineChart(title: string, xLabel: string, yLabel: string, series: readonly Series[], yMax?: number): string {
  const W = 640;
  const H = 400;
  const L = 60;
  const R = 190;
  const T = 36;
  const B = 48;
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs);
  const y1 = yMax ?? Math.max(...ys, 1e-9) * 1.05;
  const px = (x: number): number => L + ((x - x0) / (x1 - x0 || 1)) * (W - L - R);
  const py = (y: number): number => H - B - (y / y1) * (H - T - B);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${L}" y="20" font-size="14" font-weight="bold">${esc(title)}</text>`,
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/>`,
    `<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>`,
    `<text x="${(L + W - R) / 2}" y="${H - 10}" text-anchor="middle">${esc(xLabel)}</text>`,
    `<text x="14" y="${(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 14 ${(T + H - B) / 2})">${esc(yLabel)}</text>`,
  ];
  for (const t of ticks(x0, x1)) parts.push(`<line x1="${px(t)}" y1="${H - B}" x2="${px(t)}" y2="${H - B + 4}" stroke="black"/><text x="${px(t)}" y="${H - B + 16}" text-anchor="middle">${t}</text>`);
  for (const t of ticks(0, y1)) {
    parts.push(`<line x1="${L}" y1="${py(t)}" x2="${W - R}" y2="${py(t)}" stroke="#ddd"/><text x="${L - 6}" y="${py(t) + 4}" text-anchor="end">${t}</text>`);
  }
  series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length]!;
    const pts = [...s.points].sort((a, b) => a[0] - b[0]);
    const width = i === 0 ? 3 : 1.5;
    parts.push(`<polyline fill="none" stroke="${c}" stroke-width="${width}" points="${pts.map((p) => `${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join(' ')}"/>`);
    for (const p of pts) parts.push(`<circle cx="${px(p[0]).toFixed(1)}" cy="${py(p[1]).toFixed(1)}" r="2.5" fill="${c}"/>`);
    parts.push(`<line x1="${W - R + 12}" y1="${T + 10 + i * 18}" x2="${W - R + 32}" y2="${T + 10 + i * 18}" stroke="${c}" stroke-width="${width}"/><text x="${W - R + 38}" y="${T + 14 + i * 18}">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

/**
 * The same chart as a Vega-Lite spec (data inline), so any Vega tool (vega-cli's vl2svg, the
 * online editor) renders it with a real plotting library; the SVG above needs none to view.
 */
export function vegaLiteSpec(title: string, xLabel: string, yLabel: string, series: readonly Series[], yMax?: number): string {
  const values = series.flatMap((s) => s.points.map(([x, y]) => ({ system: s.name, x, y })));
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title,
    width: 480,
    height: 320,
    data: { values },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'x', type: 'quantitative', title: xLabel },
      y: { field: 'y', type: 'quantitative', title: yLabel, ...(yMax !== undefined && { scale: { domain: [0, yMax] } }) },
      color: { field: 'system', type: 'nominal' },
    },
  };
  return `${JSON.stringify(spec, null, 1)}\n`;
}
