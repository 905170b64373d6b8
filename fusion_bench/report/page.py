"""HTML pieces of the report page: plain HTML and CSS, no scripts, no external resources."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from fusion_bench.report.formats import HTML_STYLE

PAGE_STYLE = HTML_STYLE + """
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 18px; border-bottom: 1px solid #ccc; padding-bottom: 3px; margin-top: 32px; }
h3 { font-size: 15px; margin: 18px 0 6px 0; }
p, li { font-size: 14px; line-height: 1.45; max-width: 70em; }
p.meta { color: #555; font-size: 12px; }
nav a { margin-right: 14px; font-size: 14px; }
.scroll { overflow-x: auto; max-width: 100%; padding-bottom: 6px; }
.notes li { margin-bottom: 2px; }
.notes li.warn { color: #8a4b00; }
.grid { display: grid; gap: 6px 8px; align-items: start; margin-bottom: 6px; }
.grid figure { margin: 0; }
.grid img { display: block; width: 100%; height: auto; border: 1px solid #bbb; image-rendering: auto; }
.grid figcaption { font-size: 12px; text-align: center; margin-top: 2px; word-break: break-word; }
.grid .rowlabel { font-size: 12px; font-weight: bold; align-self: center; text-align: right; padding-right: 4px; }
.missing figcaption { color: #b00; }
img.plot { max-width: 100%; height: auto; border: 1px solid #eee; margin: 6px 0; }
table.plain { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
table.plain th, table.plain td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: right;
  white-space: nowrap; }
table.plain th { background: #f4f4f4; border-bottom: 2px solid #444; }
table.plain td.left, table.plain th.left { text-align: left; }
table.plain td.wrap { white-space: normal; min-width: 14em; max-width: 32em; text-align: left; }
td.sig { background: #e6f4e6; }
td.same { color: #888; }
span.swatch { display: inline-block; width: 11px; height: 11px; border: 1px solid #888; margin: 0 3px 0 10px;
  vertical-align: -1px; }
.legend { font-size: 12px; margin: 4px 0 8px 0; }
table.leaderboard span.std, table.plain span.std { display: block; }
span.kit { color: #666; font-size: 11px; }
table.leaderboard td { vertical-align: top; }
"""

e = html.escape


def fmt_number(value: object, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.{digits}g}"
    return str(value)


def plain_table(header: Sequence[str], rows: Iterable[Sequence[object]], left: int = 1,
                cell_class: Sequence[Sequence[str]] | None = None, titles: Sequence[Sequence[str]] | None = None,
                raw: bool = False, wrap: Sequence[int] = ()) -> str:
    """A simple HTML table; the first `left` columns are left-aligned, columns in `wrap` wrap their text; cells are
    escaped unless `raw`."""
    head = "".join(f'<th class="left">{e(h)}</th>' if i < left else f"<th>{e(h)}</th>" for i, h in enumerate(header))
    body = []
    for r, row in enumerate(rows):
        cells = []
        for i, value in enumerate(row):
            text = str(value) if raw else e(fmt_number(value))
            classes = (["left"] if i < left else []) + (["wrap"] if i in wrap else []) + (
                [cell_class[r][i]] if cell_class and cell_class[r][i] else [])
            cls = f' class="{" ".join(classes)}"' if classes else ""
            title = f' title="{e(titles[r][i])}"' if titles and titles[r][i] else ""
            cells.append(f"<td{cls}{title}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="scroll"><table class="plain"><thead><tr>{head}</tr></thead><tbody>' + "\n".join(body)
            + "</tbody></table></div>\n")


def figure(src: str, caption: str, missing: bool = False, alt: str | None = None) -> str:
    cls = ' class="missing"' if missing else ""
    return (f'<figure{cls}><img src="{e(src)}" alt="{e(alt or caption)}" loading="lazy">'
            f"<figcaption>{e(caption)}</figcaption></figure>")


def grid_row(label: str, figures: Sequence[str]) -> str:
    return f'<div class="rowlabel">{e(label)}</div>' + "".join(figures)


def grid(rows: Sequence[str], columns: int, tile_width: int) -> str:
    style = f"grid-template-columns: 90px repeat({columns}, minmax(120px, {tile_width}px));"
    return f'<div class="scroll"><div class="grid" style="{style}">' + "".join(rows) + "</div></div>\n"


def swatches(names: Sequence[str], colours: Sequence[Sequence[int]]) -> str:
    items = "".join(f'<span class="swatch" style="background: rgb({c[0]},{c[1]},{c[2]})"></span>{e(n)}'
                    for n, c in zip(names, colours))
    return f'<div class="legend">{items}</div>'


def notes(items: Sequence[tuple[str, str]]) -> str:
    """(kind, text) items; kind "warn" is highlighted."""
    if not items:
        return "<p>Nothing to report: every run's outputs were found and no value is NaN.</p>"
    lis = "".join(f'<li class="{kind}">{e(text)}</li>' for kind, text in items)
    return f'<ul class="notes">{lis}</ul>'


def page(title: str, meta: str, nav: Sequence[tuple[str, str]], sections: Sequence[str]) -> str:
    links = "".join(f'<a href="#{e(anchor)}">{e(name)}</a>' for anchor, name in nav)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"generator\" content=\"fusion-bench report\"><title>{e(title)}</title>"
            f"<style>{PAGE_STYLE}</style></head>\n<body>\n<h1>{e(title)}</h1>\n<p class=\"meta\">{meta}</p>\n"
            f"<nav>{links}</nav>\n" + "\n".join(sections) + "\n</body></html>\n")


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{e(anchor)}">\n<h2>{e(title)}</h2>\n{body}\n</section>'


def rel(path: Path, out: Path) -> str:
    """`path` relative to the report folder `out`, as the page links it."""
    return path.relative_to(out).as_posix()
