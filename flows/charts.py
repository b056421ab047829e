"""Line charts as self-contained SVG, for training curves and score-by-step plots."""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
FONT_SIZE = 11  # px, of every label but the title
# Widths of sans-serif glyphs as a share of the font size (Helvetica/DejaVu Sans, rounded up):
# an SVG has no text measurement, so the space for a label is reserved from these.
NARROW, WIDE = set("fijlrt.,:;'|!()[] "), set("mwMW@%")


def text_width(text: str, font_size: float = FONT_SIZE) -> float:
    """An upper estimate of the drawn width of `text` in pixels (no SVG renderer measures it)."""
    em = sum(
        0.35 if c in NARROW else 0.95 if c in WIDE else 0.72 if c.isupper() else 0.62 for c in text
    )
    return em * font_size


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
    if value == int(value) and abs(value) < 10_000_000:
        return f"{int(value):,}"  # steps and counts: 20,000
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
    markers: Sequence[tuple[float, str]] = (),
) -> str:
    """An SVG line chart of named (x, y) series; points are drawn when a series is short.
    `markers` are labelled vertical lines at an x (e.g. where a training phase ends). The
    plot area is `width` less the margins; the chart grows to the right to fit the legend."""
    # Long on purpose: the chart's SVG elements in drawing order (frame, ticks, lines,
    # legend), each a few lines that depend on the same scales.
    points = [(x, y) for pts in series.values() for x, y in pts if math.isfinite(y)]
    left, top, bottom = 64, 34, 46
    plot_w, plot_h = width - left - 150, height - top - bottom
    right = max(150, math.ceil(46 + max((text_width(name) for name in series), default=0.0)))
    width = left + plot_w + right
    height = max(height, top + 16 * len(series) + 10)  # every legend line below the title
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="13">{escape(title)}</text>',
    ]
    if not points:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">no data</text>')
        return "\n".join(parts + ["</svg>"])
    xs = [p[0] for p in points] + [x for x, _ in markers if math.isfinite(x)]
    x_low, x_high = min(xs), max(xs)
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
    whole_x = all(float(x).is_integer() for x in xs)  # steps: no tick at step 8.5
    for t in _ticks(x_low, x_high):
        if whole_x and not float(t).is_integer():
            continue
        x = sx(t)
        parts.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{_label(t)}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{top + plot_h + bottom - 8}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    parts.append(
        f'<text x="14" y="{top + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + plot_h / 2})">{escape(y_label)}</text>'
    )
    for x, label in markers:
        if not math.isfinite(x):
            continue
        mx = sx(x)
        parts.append(
            f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{top}" y2="{top + plot_h}" stroke="#555" '
            'stroke-dasharray="4 3"/>'
        )
        # The label inside the plot, on the side of the line with room for it.
        anchor, dx = ("end", -4) if mx - left > text_width(label) + 8 else ("start", 4)
        parts.append(
            f'<text x="{mx + dx:.1f}" y="{top + 12}" text-anchor="{anchor}" fill="#555">'
            f"{escape(label)}</text>"
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
        lx = left + plot_w
        parts.append(
            f'<line x1="{lx + 12}" x2="{lx + 30}" y1="{ly - 4}" '
            f'y2="{ly - 4}" stroke="{color}" stroke-width="2"/>'
        )
        parts.append(f'<text x="{lx + 36}" y="{ly}">{escape(name)}</text>')
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
    values = [v for vs in groups.values() for v in vs.values() if math.isfinite(v)]
    high = max(values + [1e-9])
    # Room for the group names on the left, the value after the longest bar and the legend.
    bar, gap, top = 12, 10, 34
    left = math.ceil(12 + max((text_width(g) for g in groups), default=0.0))
    value_w = math.ceil(8 + max((text_width(_label(v)) for v in values), default=0.0))
    legend_w = math.ceil(40 + max((text_width(name) for name in series), default=0.0))
    plot_w = max(width - 170 - 150, 120)
    width = max(left + plot_w + value_w + legend_w, width)
    height = top + 30 + sum(gap + bar * max(len(v), 1) for v in groups.values())
    height = max(height, top + 16 * len(series) + 10)
    legend_x = left + plot_w + value_w
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
            f'<rect x="{legend_x + 12}" y="{ly - 9}" width="12" height="10" fill="{color}"/>'
        )
        parts.append(f'<text x="{legend_x + 30}" y="{ly}">{escape(name)}</text>')
    return "\n".join(parts + ["</svg>"])
