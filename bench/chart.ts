/**
 * A small SVG generator for bench/results.svg: one horizontal bar per figure, its ratio against the
 * baseline on a log scale (1 = as fast as the baseline; right is better), the target as a tick,
 * green where the target is met, red where missed, grey where none is set.
 */
import type { BenchResult } from './run.js';

const WIDTH = 900;
const LABEL = 430;
const ROW = 34;
const TOP = 40;

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export function renderChart(results: BenchResult[]): string {
  const ratios = results.flatMap((r) => [r.ratio, r.target ?? 1]);
  const low = Math.min(0.1, ...ratios.map((r) => r / 1.5));
  const high = Math.max(10, ...ratios.map((r) => r * 1.5));
  const plot = WIDTH - LABEL - 30;
  const x = (ratio: number) => LABEL + (Math.log(ratio / low) / Math.log(high / low)) * plot;
  const height = TOP + results.length * ROW + 40;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="22" font-size="15" font-weight="bold">kmip-agent benchmarks: ratio to the baseline (log scale, higher is better; tick = target)</text>`,
  ];
  for (const grid of [0.01, 0.1, 0.3, 1, 3, 10, 30, 100, 300, 1000, 3000]) {
    if (grid < low || grid > high) continue;
    const gx = x(grid).toFixed(1);
    parts.push(
      `<line x1="${gx}" y1="${TOP - 6}" x2="${gx}" y2="${height - 30}" stroke="${grid === 1 ? '#555' : '#ddd'}"/>`,
      `<text x="${gx}" y="${height - 14}" text-anchor="middle" fill="#555">${grid}x</text>`,
    );
  }
  results.forEach((r, i) => {
    const y = TOP + i * ROW;
    const color = r.met === null ? '#8a8a8a' : r.met ? '#2e8b57' : '#c0392b';
    const x0 = x(Math.min(1, r.ratio));
    const x1 = x(Math.max(1, r.ratio));
    const label = `${r.part}: ${r.name}`;
    parts.push(
      `<text x="10" y="${y + 12}">${escape(label.length > 70 ? label.slice(0, 67) + '...' : label)}</text>`,
      `<text x="10" y="${y + 25}" fill="#666" font-size="10">vs ${escape(r.baselineName.length > 80 ? r.baselineName.slice(0, 77) + '...' : r.baselineName)}</text>`,
      `<rect x="${x0.toFixed(1)}" y="${y + 4}" width="${Math.max(1, x1 - x0).toFixed(1)}" height="18" fill="${color}"/>`,
      `<text x="${(x1 + 4).toFixed(1)}" y="${y + 17}">${r.ratio >= 10 ? r.ratio.toFixed(0) : r.ratio.toFixed(2)}</text>`,
    );
    if (r.target !== null) {
      const tx = x(r.target).toFixed(1);
      parts.push(`<line x1="${tx}" y1="${y + 1}" x2="${tx}" y2="${y + 25}" stroke="black" stroke-width="2"/>`);
    }
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
