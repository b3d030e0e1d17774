"""Bar charts as server-rendered SVG: no script, no external asset, readable by screen
readers through a title, a description and the data table shown beside each chart."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 720
HEIGHT = 240
LEFT = 64
RIGHT = 12
TOP = 12
BOTTOM = 36


@dataclass(frozen=True)
class Series:
    name: str
    css_class: str
    values: Sequence[float]


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5 or 5 times a power of ten at or above `value`, so that
    axes end on round numbers."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1) if value >= 1 else 1.0
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def bar_chart(
    chart_id: str,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[Series],
    value_text: Callable[[float], str],
    label_every: int = 5,
) -> Markup:
    """Grouped bars, one group per label (a day), one bar per series."""
    count = max(len(labels), 1)
    top_value = _nice_ceiling(max((v for s in series for v in s.values), default=0.0))
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    group = plot_width / count
    bar = max(group * 0.8 / max(len(series), 1), 1.0)
    parts = [
        Markup(
            '<svg class="chart" id="{id}" viewBox="0 0 {w} {h}" role="img" '
            'aria-labelledby="{id}-title {id}-desc" preserveAspectRatio="xMidYMid meet">'
        ).format(id=chart_id, w=WIDTH, h=HEIGHT),
        Markup('<title id="{}-title">{}</title>').format(chart_id, title),
        Markup('<desc id="{}-desc">{}</desc>').format(chart_id, description),
    ]
    for fraction in (0.0, 0.5, 1.0):
        y = TOP + plot_height * (1 - fraction)
        parts.append(
            Markup('<line class="grid-line" x1="{}" x2="{}" y1="{:.1f}" y2="{:.1f}"/>').format(
                LEFT, WIDTH - RIGHT, y, y
            )
        )
        parts.append(
            Markup('<text x="{}" y="{:.1f}" text-anchor="end">{}</text>').format(
                LEFT - 6, y + 4, value_text(top_value * fraction)
            )
        )
    for index, label in enumerate(labels):
        x0 = LEFT + group * index + group * 0.1
        for position, item in enumerate(series):
            value = item.values[index] if index < len(item.values) else 0.0
            height = plot_height * (value / top_value) if top_value else 0.0
            parts.append(
                Markup(
                    '<rect class="{}" x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}">'
                    "<title>{}: {} {}</title></rect>"
                ).format(
                    item.css_class,
                    x0 + bar * position,
                    TOP + plot_height - height,
                    bar,
                    height,
                    label,
                    item.name,
                    value_text(value),
                )
            )
        if index % label_every == 0 or index == count - 1:
            parts.append(
                Markup('<text x="{:.1f}" y="{}" text-anchor="middle">{}</text>').format(
                    LEFT + group * index + group / 2, HEIGHT - BOTTOM + 16, label
                )
            )
    parts.append(
        Markup('<line class="axis" x1="{}" x2="{}" y1="{}" y2="{}"/>').format(
            LEFT, WIDTH - RIGHT, TOP + plot_height, TOP + plot_height
        )
    )
    parts.append(Markup("</svg>"))
    return Markup("").join(escape(part) for part in parts)
