"""Line charts as self-contained SVG, for training curves and score-by-step plots."""

from __future__ import annotations

import base64
import math
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), default=raw)
    start = math.ceil(low / step) * step
    ticks, value = [], start
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 10_000 or abs(value) < 0.001:
        return f"{value:.2g}"
    return f"{value:g}"


def line_chart_svg(
    series: dict[str, list[tuple[float, float]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    width: int = 640,
    height: int = 320,
) -> str:
    """An SVG line chart of named (x, y) series; points are drawn when a series is short."""
    points = [(x, y) for pts in series.values() for x, y in pts if math.isfinite(y)]
    left, right, top, bottom = 64, 150, 34, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="13">{escape(title)}</text>',
    ]
    if not points:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">no data</text>')
        return "\n".join(parts + ["</svg>"])
    x_low, x_high = min(p[0] for p in points), max(p[0] for p in points)
    y_low, y_high = min(p[1] for p in points), max(p[1] for p in points)
    if x_high == x_low:
        x_low, x_high = x_low - 1, x_high + 1
    if y_high == y_low:
        y_low, y_high = y_low - abs(y_low) * 0.1 - 1e-3, y_high + abs(y_high) * 0.1 + 1e-3
    pad = (y_high - y_low) * 0.05
    y_low, y_high = y_low - pad, y_high + pad

    def sx(x: float) -> float:
        return left + (x - x_low) / (x_high - x_low) * plot_w

    def sy(y: float) -> float:
        return top + (1 - (y - y_low) / (y_high - y_low)) * plot_h

    parts.append(
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>'
    )
    for t in _ticks(y_low, y_high):
        y = sy(t)
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
        )
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_label(t)}</text>')
    for t in _ticks(x_low, x_high):
        x = sx(t)
        parts.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{_label(t)}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle">{escape(x_label)}</text>'
    )
    parts.append(
        f'<text x="14" y="{top + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + plot_h / 2})">{escape(y_label)}</text>'
    )
    for i, (name, pts) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        pts = sorted((x, y) for x, y in pts if math.isfinite(y))
        if pts:
            coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
            parts.append(
                f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="1.8"/>'
            )
            if len(pts) <= 40:
                parts.extend(
                    f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{color}"/>'
                    for x, y in pts
                )
        ly = top + 12 + 16 * i
        parts.append(
            f'<line x1="{width - right + 12}" x2="{width - right + 30}" y1="{ly - 4}" '
            f'y2="{ly - 4}" stroke="{color}" stroke-width="2"/>'
        )
        parts.append(f'<text x="{width - right + 36}" y="{ly}">{escape(name)}</text>')
    return "\n".join(parts + ["</svg>"])


def svg_markdown_image(svg: str, alt: str) -> str:
    """A markdown image that carries the SVG inline as a data URI (shown by the Prefect UI)."""
    data = base64.b64encode(svg.encode()).decode()
    return f"![{alt}](data:image/svg+xml;base64,{data})"


def bar_chart_svg(
    groups: dict[str, dict[str, float]], *, title: str, y_label: str, width: int = 640
) -> str:
    """An SVG of horizontal bars: one block per group (a row of a table), one bar per series
    (a column), the value written at the end of each bar; missing values are left out."""
    series = sorted({name for values in groups.values() for name in values})
    bar, gap, left, right, top = 12, 10, 170, 150, 34
    height = top + 30 + sum(gap + bar * max(len(v), 1) for v in groups.values())
    values = [v for vs in groups.values() for v in vs.values() if math.isfinite(v)]
    high = max(values + [1e-9])
    plot_w = width - left - right
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="13">{escape(title)}</text>',
        f'<text x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle">'
        f"{escape(y_label)}</text>",
    ]
    y = top
    for group, named in groups.items():
        block = bar * max(len(named), 1)
        parts.append(
            f'<text x="{left - 6}" y="{y + block / 2 + 4:.1f}" text-anchor="end">'
            f"{escape(group)}</text>"
        )
        for name in series:
            if name not in named or not math.isfinite(named[name]):
                continue
            length = named[name] / high * plot_w
            color = PALETTE[series.index(name) % len(PALETTE)]
            parts.append(
                f'<rect x="{left}" y="{y}" width="{max(length, 0):.1f}" height="{bar - 2}" '
                f'fill="{color}"/>'
            )
            parts.append(
                f'<text x="{left + max(length, 0) + 4:.1f}" y="{y + bar - 3}">'
                f"{_label(named[name])}</text>"
            )
            y += bar
        y += gap + (0 if named else bar)
    for i, name in enumerate(series):
        ly = top + 12 + 16 * i
        color = PALETTE[i % len(PALETTE)]
        parts.append(
            f'<rect x="{width - right + 12}" y="{ly - 9}" width="12" height="10" fill="{color}"/>'
        )
        parts.append(f'<text x="{width - right + 30}" y="{ly}">{escape(name)}</text>')
    return "\n".join(parts + ["</svg>"])
