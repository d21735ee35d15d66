"""Small server-side SVG bar charts: no JavaScript, no external library, no inline style
(colours are SVG attributes, which the page's Content-Security-Policy allows)."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH = 640
HEIGHT = 200
PAD_LEFT = 36
PAD_BOTTOM = 28
PAD_RIGHT = 28
BAR = "#1f5f52"
GRID = "#d9d4ca"
INK = "#4a5552"


def bar_chart(points: Sequence[tuple[str, int]], *, title: str, label_every: int = 1) -> Markup:
    """A bar chart of (label, value) points, accessible through its title and a table-like
    description for screen readers."""
    top = max((value for _, value in points), default=0) or 1
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_BOTTOM - 12
    step = plot_w / max(len(points), 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg" aria-labelledby="t-{id(points)}">',
        f'<title id="t-{id(points)}">{escape(title)}: '
        + escape(", ".join(f"{label} {value}" for label, value in points))
        + "</title>",
    ]
    for fraction in (0, 0.5, 1):
        y = 12 + plot_h * (1 - fraction)
        parts.append(
            f'<line x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{GRID}"/>'
            f'<text x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="{INK}">{top * fraction:g}</text>'
        )
    for i, (label, value) in enumerate(points):
        h = plot_h * value / top
        x = PAD_LEFT + i * step + step * 0.15
        parts.append(
            f'<rect x="{x:.1f}" y="{12 + plot_h - h:.1f}" width="{step * 0.7:.1f}" '
            f'height="{h:.1f}" fill="{BAR}" rx="2"><title>{escape(label)}: {value}</title></rect>'
        )
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + step * 0.35:.1f}" y="{HEIGHT - 10}" text-anchor="middle" '
                f'font-size="11" fill="{INK}">{escape(label)}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))
