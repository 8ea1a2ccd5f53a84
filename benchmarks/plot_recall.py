"""Draw the vector benchmark's recall/throughput curve as an SVG (no plotting library).

    python benchmarks/plot_recall.py [results.json] [out.svg]

Reads the "recall / throughput curve" table of the ``vectors`` section
(benchmarks/results/latest.json by default) and writes
benchmarks/results/recall-throughput.svg: queries/s (log scale) against
recall@10, one line for tier0 and one for faiss called directly, each point
labelled with its ef, and the issue's target (≥ 1,000 q/s at recall ≥ 0.95)
shaded.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
WIDTH, HEIGHT = 640, 400
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 30, 50
SERIES = (("tier0", "tier0 recall@10", "tier0 q/s", "#1f77b4"),
          ("faiss alone", "faiss recall@10", "faiss q/s", "#ff7f0e"))  # fmt: skip


def _number(text: str | int | float) -> float:
    return float(str(text).replace(",", ""))


def render(table: dict[str, list]) -> str:
    columns = table["columns"]
    rows = table["rows"]
    points = {
        name: [(_number(r[columns.index(rc)]), _number(r[columns.index(qc)]), r[0]) for r in rows]
        for name, rc, qc, _ in SERIES
    }
    recalls = [p[0] for series in points.values() for p in series]
    rates = [p[1] for series in points.values() for p in series]
    x_low, x_high = min(min(recalls), 0.8), 1.0
    y_low = 10 ** math.floor(math.log10(min(min(rates), 1000)))
    y_high = 10 ** math.ceil(math.log10(max(rates)))

    def x(recall: float) -> float:
        return LEFT + (recall - x_low) / (x_high - x_low) * (WIDTH - LEFT - RIGHT)

    def y(rate: float) -> float:
        span = math.log10(y_high) - math.log10(y_low)
        return TOP + (1 - (math.log10(rate) - math.log10(y_low)) / span) * (HEIGHT - TOP - BOTTOM)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}"'
        ' font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        # The target: recall >= 0.95 at >= 1,000 q/s.
        f'<rect x="{x(0.95):.1f}" y="{y(y_high):.1f}" width="{x(1.0) - x(0.95):.1f}"'
        f' height="{y(1000) - y(y_high):.1f}" fill="#2ca02c" fill-opacity="0.12"/>',
        f'<text x="{x(0.95) + 4:.1f}" y="{y(y_high) + 14:.1f}" fill="#2ca02c">target</text>',
    ]
    decade = y_low
    while decade <= y_high:
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(decade):.1f}" y2="{y(decade):.1f}"'
            ' stroke="#ddd"/>'
            f'<text x="{LEFT - 6}" y="{y(decade) + 4:.1f}" text-anchor="end">{decade:,.0f}</text>'
        )
        decade *= 10
    tick = math.ceil(x_low * 20) / 20
    while tick <= x_high + 1e-9:
        parts.append(
            f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}"'
            ' stroke="#eee"/>'
            f'<text x="{x(tick):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">'
            f"{tick:.2f}</text>"
        )
        tick += 0.05
    for index, (name, _, _, colour) in enumerate(SERIES):
        series = sorted(points[name])
        path = " ".join(f"{x(r):.1f},{y(q):.1f}" for r, q, _ in series)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for recall, rate, ef in series:
            parts.append(
                f'<circle cx="{x(recall):.1f}" cy="{y(rate):.1f}" r="3" fill="{colour}"/>'
                f'<text x="{x(recall) + 5:.1f}" y="{y(rate) - 5:.1f}" fill="{colour}"'
                f' font-size="10">ef={ef}</text>'
            )
        parts.append(
            f'<text x="{LEFT + 10}" y="{HEIGHT - BOTTOM - 30 + 16 * index}" fill="{colour}">'
            f"{name}</text>"
        )
    parts += [
        f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 12}" text-anchor="middle">'
        "recall@10</text>",
        f'<text x="16" y="{(TOP + HEIGHT - BOTTOM) / 2}" text-anchor="middle"'
        f' transform="rotate(-90 16 {(TOP + HEIGHT - BOTTOM) / 2})">queries/s, one thread</text>',
        f'<text x="{LEFT}" y="18">Vector search, 1,000,000 x 384, HNSW M=16: recall vs'
        " throughput</text>",
        "</svg>",
    ]
    return "\n".join(parts) + "\n"


def main(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else RESULTS / "latest.json"
    out = Path(argv[1]) if len(argv) > 1 else RESULTS / "recall-throughput.svg"
    tables = json.loads(source.read_text())["sections"]["vectors"]["tables"]
    table = next(t for name, t in tables.items() if name.startswith("recall / throughput"))
    out.write_text(render(table))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
