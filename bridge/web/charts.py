"""Small charts drawn on the server as inline SVG: no script, no CDN, readable without colour.

The overview's throughput per channel is a bar per minute over the last hour; its title (what a
screen reader and a hover show) says the total and the busiest minute."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 120, 24


def sparkline(counts: Sequence[int], label: str) -> Markup:
    """Bars for ``counts`` (oldest first), scaled to the busiest; an empty hour is a flat line."""
    total, peak = sum(counts), max(counts, default=0)
    title = f"{label}: {total} received in the last {len(counts)} minutes, at most {peak} in one minute"
    step = WIDTH / max(len(counts), 1)
    bars = []
    for index, count in enumerate(counts):
        if count:
            height = max(1.0, HEIGHT * count / peak)
            bars.append(f'<rect x="{index * step:.1f}" y="{HEIGHT - height:.1f}" width="{max(step - 0.5, 0.5):.1f}" '
                        f'height="{height:.1f}"/>')
    baseline = f'<line x1="0" y1="{HEIGHT - 0.5}" x2="{WIDTH}" y2="{HEIGHT - 0.5}"/>'
    return Markup(f'<svg class="sparkline" role="img" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}">'
                  f'<title>{escape(title)}</title>{baseline}{"".join(bars)}</svg>')
