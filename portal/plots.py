"""Line plots as server-rendered SVG: one polyline over time with labelled axes, for the
resource pages. No JavaScript: the picture is in the page, its <title> and <desc> say what
it shows and the last, lowest and highest values in words (screen readers read those), and
the pages print the numbers beside it too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime

from markupsafe import Markup, escape

WIDTH, HEIGHT = 320, 120
# Room for the axes' labels: left (values), bottom (times), and a margin top and right.
LEFT, BOTTOM, TOP, RIGHT = 72, 18, 8, 8  # "0.01 CPU", "512 MiB" fit left of the axis


def line_plot(
    title: str,
    points: Sequence[tuple[datetime, float]],
    fmt: Callable[[float], str],
    top: float | None = None,
) -> Markup:
    """An SVG of `points` (time, value) titled `title`; values printed with `fmt`; the value
    axis runs from 0 to `top` (e.g. 1 for a fraction) or to the highest value."""
    plot_id = "plot-" + hashlib.sha256(title.encode()).hexdigest()[:10]
    if not points:
        description = f"{title}: no data yet"
        body = f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no data yet</text>'
    else:
        times = [t.timestamp() for t, _ in points]
        values = [v for _, v in points]
        highest = top if top is not None else max(max(values), 1e-9)
        first, last = min(times), max(times)
        span = max(last - first, 1.0)
        inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

        def x(t: float) -> float:
            return LEFT + (t - first) / span * inner_w

        def y(v: float) -> float:
            return TOP + inner_h - min(max(v / highest, 0.0), 1.0) * inner_h

        line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in zip(times, values, strict=True))
        description = (
            f"{title}: now {fmt(values[-1])}, lowest {fmt(min(values))}, highest "
            f"{fmt(max(values))}, from {points[0][0]:%H:%M} to {points[-1][0]:%H:%M} UTC"
        )
        bottom = TOP + inner_h
        body = (
            f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}"/>'
            f'<line class="axis" x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}"/>'
            f'<text x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end">{escape(fmt(highest))}</text>'
            f'<text x="{LEFT - 4}" y="{bottom}" text-anchor="end">{escape(fmt(0))}</text>'
            f'<text x="{LEFT}" y="{HEIGHT - 4}">{points[0][0]:%H:%M}</text>'
            f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 4}" text-anchor="end">'
            f"{points[-1][0]:%H:%M} UTC</text>"
            f'<polyline class="series" fill="none" points="{line}"/>'
            # The newest point as a dot: visible also when there is only one yet.
            f'<circle class="series-now" cx="{x(times[-1]):.1f}" cy="{y(values[-1]):.1f}" r="3"/>'
        )
    # Every text in the picture (title, description, formatted values) is escaped above.
    return Markup(  # noqa: S704
        f'<svg class="plot" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'aria-labelledby="{plot_id}-t {plot_id}-d" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{plot_id}-t">{escape(title)}</title>'
        f'<desc id="{plot_id}-d">{escape(description)}</desc>{body}</svg>'
    )


def percent(fraction: float) -> str:
    return f"{fraction * 100:.0f} %"


def cores(value: float) -> str:
    return f"{value:.2f} CPU" if value < 10 else f"{value:.0f} CPU"


def size(value: float) -> str:
    """Bytes in the largest unit that keeps the number at least 1 (binary units)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
