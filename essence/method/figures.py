"""Figures of a run folder: the contact sheet and Figure 1 (one layout), the apply grid (labelled), the loss plot.

Sheets and grids are pasted with PIL; the loss plot is drawn by matplotlib (imported only when a plot is made).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from PIL import Image, ImageDraw

LABEL_HEIGHT = 14
BLACK, WHITE = (0, 0, 0), (255, 255, 255)


def sheet_tile(resolution: int) -> int:
    """The tile size of sheets and figures for a generator's resolution: 96 to 256 pixels."""
    return max(96, min(int(resolution), 256))


def square_tile(img: Image.Image, size: int) -> Image.Image:
    """Centre-crop to a square and resize, as the target is shown in the sheet."""
    from PIL import Image

    w, h = img.size
    s = min(w, h)
    box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    return img.convert("RGB").crop(box).resize((size, size), Image.Resampling.LANCZOS)


def fit_tile(img: Image.Image, tile: int) -> Image.Image:
    """An image at ``tile`` x ``tile``: nearest-neighbour when enlarged (small generators stay crisp)."""
    from PIL import Image

    up = img.width < tile
    return img.convert("RGB").resize((tile, tile), Image.Resampling.NEAREST if up else Image.Resampling.LANCZOS)


@dataclass
class SheetRow:
    """One row of a sheet: ``images`` in columns 1.., and what the left cell (column 0) shows: the target
    image(s), stacked; a text on grey; or nothing. ``captions``: column -> text, in a band above the row."""

    images: Sequence[Image.Image]
    left: Union[Sequence[Image.Image], str, None] = None
    captions: Mapping[int, str] = field(default_factory=dict)


def sheet(rows: Sequence[SheetRow], *, tile: int = 256, gap: int = 4) -> Image.Image:
    """Rows of tiles with a left cell each: the layout of the contact sheet and of Figure 1."""
    from PIL import Image, ImageDraw

    n = len(rows[0].images)
    if any(len(r.images) != n for r in rows):
        raise ValueError("every row needs the same number of images (one result per source)")
    width = (n + 1) * tile + (n + 2) * gap
    height = sum(tile + gap + (LABEL_HEIGHT if r.captions else 0) for r in rows) + gap
    out = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(out)

    def x_of(col: int) -> int:
        return gap + col * (tile + gap)

    y = 0
    for r, row in enumerate(rows):
        if r:
            y += gap
        if row.captions:
            for col, text in row.captions.items():
                draw.text((x_of(col), y + 2), text, fill=BLACK)
            y += LABEL_HEIGHT
        if not r:
            y += gap
        for i, img in enumerate(row.images):
            out.paste(fit_tile(img, tile), (x_of(i + 1), y))
        if isinstance(row.left, str):
            draw.rectangle([x_of(0), y, x_of(0) + tile - 1, y + tile - 1], fill=(235, 235, 235))
            lines = wrap_text(row.left, tile)
            top = y + max(2, tile // 2 - 6 * len(lines))
            draw.multiline_text((x_of(0) + 6, top), "\n".join(lines), fill=BLACK, spacing=2)
        elif row.left is not None:
            _stack(out, draw, row.left, x_of(0), y, tile)
        y += tile
    return out


def wrap_text(text: str, tile: int) -> list[str]:
    """Lines of ``text`` that fit a tile in PIL's default font (about 6 px a character), at most a tile high."""
    import textwrap

    lines = textwrap.wrap(text, width=max(8, (tile - 12) // 6)) or [""]
    most = max(1, (tile - 4) // 12)
    return lines[:most] if len(lines) <= most else [*lines[: most - 1], lines[most - 1][:-3] + "..."]


def _stack(out: Image.Image, draw: ImageDraw.ImageDraw, targets: Sequence[Image.Image], x: int, y: int, tile: int) -> None:
    """Several targets share one cell in a k x k grid; none is a grey placeholder."""
    if not targets:
        draw.rectangle([x, y, x + tile - 1, y + tile - 1], fill=(200, 200, 200))
        return
    k = math.ceil(math.sqrt(len(targets)))
    sub = tile // k
    for j, t in enumerate(targets):
        out.paste(square_tile(t, sub), (x + (j % k) * sub, y + (j // k) * sub))


def contact_sheet(
    targets: Sequence[Image.Image],
    sources: Sequence[Image.Image],
    results: Sequence[Image.Image],
    *,
    tile: int = 256,
    gap: int = 4,
    texts: Sequence[str] = (),
    inverted: Image.Image | None = None,
    inverted_label: str = "inverted target",
) -> Image.Image:
    """The paper's layout: sources along the top row, results below them, the target(s) at the left
    (text targets: their words in the target's cell, or in the results' caption when there are images too).
    ``inverted``: the target as the generator makes it (G(w_t), what a StyleGAN blend mixes), left of the sources."""
    if len(results) != len(sources):
        raise ValueError("one result per source")
    left, caption = target_cell(targets, texts)
    top = SheetRow(sources, None, {1: "sources"}) if inverted is None else SheetRow(
        sources, [inverted], {0: inverted_label, 1: "sources"}
    )
    return sheet(
        [
            top,
            SheetRow(results, left, {0: "target", 1: caption}),
        ],
        tile=tile,
        gap=gap,
    )


def target_cell(targets: Sequence[Image.Image], texts: Sequence[str]) -> tuple[Union[list[Image.Image], str], str]:
    """What a sheet's target cell shows (the images, stacked, else the text targets) and the results' caption
    (which names the text targets when there are images too)."""
    quoted = " + ".join(f'"{t}"' for t in texts)
    if not targets:
        return quoted, "results"
    return list(targets), f"results (target images + {quoted})" if texts else "results"


def comparison_figure(
    targets: Sequence[Image.Image],
    sources: Sequence[Image.Image],
    rows: Sequence[tuple[str, Sequence[Image.Image]]],
    *,
    tile: int = 256,
    gap: int = 4,
) -> Image.Image:
    """The paper's Figure 1: the target at the left of the top row, the sources along it, then one row of
    results per method with the method's name in its left cell."""
    top = SheetRow(sources, list(targets), {0: "target", 1: "sources"})
    return sheet([top, *(SheetRow(images, label) for label, images in rows)], tile=tile, gap=gap)


def loss_figure(
    series: Mapping[str, Sequence[float]], *, size: tuple[int, int] = (720, 420), title: str = "loss"
) -> Figure:
    """A matplotlib figure of each series against the step: axes with tick labels, a grid and a legend.

    Built on matplotlib's object API (no pyplot), so it is safe to draw from any thread (the web UI does).
    Non-finite values leave gaps instead of spoiling the scale.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(size[0] / 100, size[1] / 100), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, values in series.items():
        ax.plot(range(len(values)), [v if math.isfinite(v) else math.nan for v in values], label=name, linewidth=1.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    ax.set_xlabel("step")
    ax.set_ylabel("value")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    if series:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def loss_plot(
    series: Mapping[str, Sequence[float]], *, size: tuple[int, int] = (720, 420), title: str = "loss"
) -> Image.Image:
    """:func:`loss_figure` drawn into an RGB image of ``size`` pixels (matplotlib's Agg backend)."""
    import numpy as np
    from PIL import Image

    fig = loss_figure(series, size=size, title=title)
    fig.canvas.draw()
    return Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB")


#: Pixels a character of PIL's default font takes, for sizing label margins.
CHAR_WIDTH = 6


def labelled_grid(
    rows: Sequence[Sequence[Image.Image]], tile: int, columns: Sequence[str], row_labels: Sequence[str]
) -> tuple[Image.Image, tuple[int, int]]:
    """:func:`image_grid` with a caption above each column (``alpha 0.5``) and a name left of each row
    (``source 0``, a photo's name). The tiles stay edge to edge, from the returned ``origin`` ``(x, y)``:
    tile ``(r, c)`` is at ``(x + c * tile, y + r * tile)``. A caption wider than a tile is shortened."""
    from PIL import Image, ImageDraw

    if len(columns) != len(rows[0]) or len(row_labels) != len(rows):
        raise ValueError("one caption per column and one name per row")
    fits = max(1, (tile - 2) // CHAR_WIDTH)
    names = [n if len(n) <= 24 else n[:21] + "..." for n in row_labels]
    left = max(CHAR_WIDTH * max(len(n) for n in names) + 8, 8)
    top = LABEL_HEIGHT + 2
    grid = image_grid(rows, tile)
    out = Image.new("RGB", (left + grid.width, top + grid.height), WHITE)
    out.paste(grid, (left, top))
    draw = ImageDraw.Draw(out)
    for c, text in enumerate(columns):
        short = text if len(text) <= fits else text.split()[-1][:fits]
        draw.text((left + c * tile + 1, 2), short, fill=BLACK)
    for r, name in enumerate(names):
        draw.text((4, top + r * tile + max(0, tile // 2 - 6)), name, fill=BLACK)
    return out, (left, top)


def image_grid(rows: Sequence[Sequence[Image.Image]], tile: int) -> Image.Image:
    """Tiles edge to edge, ``len(rows)`` x ``len(rows[0])`` of ``tile`` pixels: nothing else, so a grid's
    size says its layout and any tile can be cut out of it at ``(col * tile, row * tile)``."""
    from PIL import Image

    if not rows or not rows[0] or any(len(r) != len(rows[0]) for r in rows):
        raise ValueError("a grid needs rows of equal, non-zero length")
    grid = Image.new("RGB", (len(rows[0]) * tile, len(rows) * tile))
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            grid.paste(fit_tile(img, tile), (c * tile, r * tile))
    return grid


