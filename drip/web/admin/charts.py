"""Small server-side SVG bar charts: no JavaScript, no external library, no inline style
(colours are SVG attributes, which the page's Content-Security-Policy allows)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from markupsafe import Markup

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
    description for screen readers.

    Every piece is built with Markup.format, which escapes each value once and leaves the
    tags alone; concatenating a plain str with Markup would escape the tags instead."""
    top = max((value for _, value in points), default=0) or 1
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_BOTTOM - 12
    step = plot_w / max(len(points), 1)
    title_id = "t-" + re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    described = ", ".join(f"{label} {value}" for label, value in points)
    parts = [
        Markup(
            '<svg class="chart" viewBox="0 0 {w} {h}" role="img" '
            'xmlns="http://www.w3.org/2000/svg" aria-labelledby="{id}">'
            '<title id="{id}">{title}: {described}</title>'
        ).format(w=WIDTH, h=HEIGHT, id=title_id, title=title, described=described)
    ]
    for fraction in (0, 0.5, 1):
        parts.append(
            Markup(
                '<line x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{grid}"/>'
                '<text x="{tick}" y="{ty:.1f}" text-anchor="end" font-size="11" '
                'fill="{ink}">{value:g}</text>'
            ).format(
                left=PAD_LEFT,
                right=WIDTH - PAD_RIGHT,
                y=12 + plot_h * (1 - fraction),
                ty=16 + plot_h * (1 - fraction),
                grid=GRID,
                tick=PAD_LEFT - 6,
                ink=INK,
                value=top * fraction,
            )
        )
    for i, (label, value) in enumerate(points):
        h = plot_h * value / top
        x = PAD_LEFT + i * step + step * 0.15
        parts.append(
            Markup(
                '<rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="{}" rx="2">'
                "<title>{}: {}</title></rect>"
            ).format(x, 12 + plot_h - h, step * 0.7, h, BAR, label, value)
        )
        if i % label_every == 0:
            parts.append(
                Markup(
                    '<text x="{:.1f}" y="{}" text-anchor="middle" font-size="11" '
                    'fill="{}">{}</text>'
                ).format(x + step * 0.35, HEIGHT - 10, INK, label)
            )
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)
