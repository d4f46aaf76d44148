"""A picture of a replay verdict: each class's score histograms for both versions, overlaid, and
the flip matrix of their top-1 predictions.

The SVG is written by hand: the operator has no plotting library and must not run model code. The
output is a pure function of its inputs (fixed layout, fixed number formatting, no ids or times),
so the same replay always renders the same bytes.
"""

from __future__ import annotations

import math
from xml.sax.saxutils import escape, quoteattr

from .analysis import flip_matrix, top1

MAX_PANELS = 10  # classes beyond this get no histogram and share one "other" row in the matrix
BINS = 10
PANEL_W, PANEL_H, PANEL_GAP, PANELS_PER_ROW = 200, 130, 20, 5
CELL = 40
SERVING_COLOUR, CANDIDATE_COLOUR = "#1f77b4", "#ff7f0e"
MARGIN = 20


def _n(x: float) -> str:
    return f"{x:.1f}"


def _text(x: float, y: float, body: str, *, size: int = 11, anchor: str = "start", **attrs: str) -> str:
    extra = "".join(f" {k.replace('_', '-')}={quoteattr(v)}" for k, v in attrs.items())
    return (f'<text x="{_n(x)}" y="{_n(y)}" font-size="{size}" text-anchor="{anchor}"{extra}>'
            f"{escape(body)}</text>")


def _histogram(values: list[float]) -> list[int]:
    counts = [0] * BINS
    for x in values:
        counts[min(int(min(max(x, 0.0), 1.0) * BINS), BINS - 1)] += 1
    return counts


def _panel(x0: float, y0: float, title: str, serving: list[float], candidate: list[float]) -> list[str]:
    s_counts, c_counts = _histogram(serving), _histogram(candidate)
    top = max(s_counts + c_counts) or 1
    plot_h, bar_w = PANEL_H - 34, PANEL_W / BINS
    base = y0 + 18 + plot_h
    out = [f'<rect x="{_n(x0)}" y="{_n(y0 + 18)}" width="{PANEL_W}" height="{_n(plot_h)}" fill="none" '
           f'stroke="#ccc"/>', _text(x0, y0 + 12, title, size=12, font_weight="bold")]
    for counts, colour in ((s_counts, SERVING_COLOUR), (c_counts, CANDIDATE_COLOUR)):
        for i, count in enumerate(counts):
            if count:
                h = plot_h * count / top
                out.append(f'<rect x="{_n(x0 + i * bar_w)}" y="{_n(base - h)}" width="{_n(bar_w)}" '
                           f'height="{_n(h)}" fill="{colour}" fill-opacity="0.5"><title>{count}</title></rect>')
    out += [_text(x0, base + 12, "0", size=9), _text(x0 + PANEL_W, base + 12, "1", size=9, anchor="end"),
            _text(x0 + PANEL_W / 2, base + 12, "score", size=9, anchor="middle")]
    return out


def _folded(matrix: list[list[int]], keep: int) -> list[list[int]]:
    """Classes from `keep - 1` on share the last row and column, so every count is still shown."""
    if len(matrix) <= keep:
        return matrix
    fold = lambda i: min(i, keep - 1)  # noqa: E731
    out = [[0] * keep for _ in range(keep)]
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            out[fold(i)][fold(j)] += count
    return out


def _matrix(x0: float, y0: float, matrix: list[list[int]], names: list[str],
            serving_label: str, candidate_label: str) -> list[str]:
    size = len(matrix)
    top = max(max(row) for row in matrix) or 1
    gx, gy = x0 + 90, y0 + 40
    out = [_text(x0, y0 + 12, "Top-1 predictions (diagonal: both agree)", size=12, font_weight="bold"),
           _text(gx + size * CELL / 2, y0 + 28, f"{candidate_label} predicts", anchor="middle"),
           _text(x0, gy + size * CELL + 16, f"rows: {serving_label} predicts")]
    names = [name if len(name) <= 9 else name[:8] + "\u2026" for name in names]  # a cell is 40 px wide
    for j in range(size):
        out.append(_text(gx + (j + 0.5) * CELL, gy - 4, names[j], size=9, anchor="middle"))
    for i, row in enumerate(matrix):
        out.append(_text(gx - 4, gy + (i + 0.5) * CELL + 4, names[i], size=9, anchor="end"))
        for j, count in enumerate(row):
            colour = "44,160,44" if i == j else "214,39,40"
            alpha = 0.08 + 0.72 * count / top if count else 0.0
            out.append(f'<rect x="{_n(gx + j * CELL)}" y="{_n(gy + i * CELL)}" width="{CELL}" height="{CELL}" '
                       f'fill="rgb({colour})" fill-opacity="{alpha:.3f}" stroke="#999"/>')
            out.append(_text(gx + (j + 0.5) * CELL, gy + (i + 0.5) * CELL + 4, str(count), anchor="middle",
                             **{"class": "count"}))
    return out


def _class_names(classes: int, class_names: list[str] | None) -> list[str]:
    if class_names is None:
        return [f"class {i}" for i in range(classes)]
    if len(class_names) != classes:
        raise ValueError(f"class_names has {len(class_names)} names for {classes} classes")
    return [str(name) for name in class_names]


def render_svg(serving: list[list[float]], candidate: list[list[float]], serving_version: str,
               candidate_version: str, class_names: list[str] | None = None) -> str:
    """The replay as one self-contained SVG document. Rows where either version answered a
    non-finite score are left out (the verdict reports them); a single-column output is the
    positive class's score, drawn as class 1 of two."""
    if len(serving) != len(candidate):
        raise ValueError(f"serving has {len(serving)} rows, candidate {len(candidate)}: rows must be aligned")
    rows = [(s, c) for s, c in zip(serving, candidate, strict=True)
            if s and len(s) == len(c) and all(math.isfinite(x) for x in (*s, *c))]
    width = len(rows[0][0]) if rows else (len(serving[0]) if serving and serving[0] else 1)
    classes = 2 if width == 1 else width
    names = _class_names(classes, class_names)
    s_label, c_label = f"version {serving_version} (serving)", f"version {candidate_version} (candidate)"
    columns = [(1, 0)] if width == 1 else [(j, j) for j in range(min(width, MAX_PANELS))]

    body = [_text(MARGIN, MARGIN + 4, f"Replay of {len(rows)} inputs: {s_label} vs {c_label}", size=14,
                  font_weight="bold")]
    legend_y = MARGIN + 22
    for k, (label, colour) in enumerate(((s_label, SERVING_COLOUR), (c_label, CANDIDATE_COLOUR))):
        x = MARGIN + k * 260
        body += [f'<rect x="{x}" y="{legend_y - 9}" width="12" height="12" fill="{colour}" fill-opacity="0.5"/>',
                 _text(x + 18, legend_y + 1, label)]
    y = legend_y + 20
    for p, (cls, col) in enumerate(columns):
        px = MARGIN + (p % PANELS_PER_ROW) * (PANEL_W + PANEL_GAP)
        py = y + (p // PANELS_PER_ROW) * (PANEL_H + PANEL_GAP)
        body += _panel(px, py, f"{names[cls]} score", [s[col] for s, _ in rows], [c[col] for _, c in rows])
    y += math.ceil(len(columns) / PANELS_PER_ROW) * (PANEL_H + PANEL_GAP)
    if width > MAX_PANELS:
        body.append(_text(MARGIN, y, f"histograms of the first {MAX_PANELS} of {width} classes"))
        y += PANEL_GAP

    matrix = flip_matrix(top1([s for s, _ in rows]), top1([c for _, c in rows]), classes) if rows \
        else [[0] * classes for _ in range(classes)]
    matrix = _folded(matrix, MAX_PANELS)
    matrix_names = names[:MAX_PANELS - 1] + ["other"] if classes > MAX_PANELS else names
    body += _matrix(MARGIN, y, matrix, matrix_names, s_label, c_label)
    size = len(matrix)
    total_w = max(MARGIN * 2 + min(len(columns), PANELS_PER_ROW) * (PANEL_W + PANEL_GAP), 560,
                  MARGIN * 2 + 90 + size * CELL)
    total_h = y + 40 + size * CELL + 30
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{_n(total_h)}" '
            f'viewBox="0 0 {total_w} {_n(total_h)}" font-family="sans-serif">')
    return "\n".join([head, f"<title>{escape(f'Replay: {s_label} vs {c_label}')}</title>", *body, "</svg>"]) + "\n"
