"""Self-contained HTML pages from seqgap's Markdown reports: one file, no network.

Figures are embedded as base64 ``data:`` PNGs, the style sheet is inline, there is no
script; the page opens the same from a laptop, a CI artifact or an e-mail attachment.

:func:`markdown_to_html` converts the Markdown subset the report writers emit (headings,
paragraphs, ``-`` lists, pipe tables, fenced code, images, ``**bold**``, ``*em*``,
`` `code` ``, links); :func:`page` wraps a body in a complete document; :func:`report_page`
renders a study's output folder (its ``summary.md`` with the figures it links and its
``results.json`` files).  Reads files only: it trains nothing and opens no store.
"""
from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any, Sequence

STYLE = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0 auto;max-width:1180px;
padding:1.2em 2em 3em;color:#1f2328;line-height:1.45;background:#fff}
h1{font-size:1.7em;border-bottom:1px solid #d0d7de;padding-bottom:.3em}
h2{font-size:1.35em;border-bottom:1px solid #eaeef2;padding-bottom:.2em;margin-top:1.6em}
h3{font-size:1.12em;margin-top:1.3em}
table{border-collapse:collapse;margin:.6em 0 1em;font-size:.86em;display:block;overflow-x:auto}
th,td{border:1px solid #d0d7de;padding:.3em .55em;text-align:left;vertical-align:top}
th{background:#f6f8fa}
tr:nth-child(even) td{background:#fbfcfd}
code{background:#f3f4f6;padding:.1em .3em;border-radius:4px;font-size:.92em}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;border-radius:6px;font-size:.82em;max-height:28em}
pre code{background:none;padding:0}
img{max-width:100%;height:auto;border:1px solid #eaeef2;margin:.4em 0}
.missing{color:#9a6700;background:#fff8c5;padding:.2em .5em;border-radius:4px}
.good{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}.unsure{color:#9a6700;font-weight:600}
details{margin:.5em 0}summary{cursor:pointer;font-weight:600}
.meta{color:#59636e;font-size:.9em}
"""


def png_data_uri(path: str | Path) -> str | None:
    """``data:image/png;base64,...`` of a PNG file (None when missing or not a PNG)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError:
        return None
    if not data.startswith(b"\x89PNG"):
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _inline(text: str, base: Path | None) -> str:
    """Inline Markdown (escaped first): images, links, code, bold, emphasis."""
    out, pos = [], 0
    # code spans are taken verbatim
    for m in re.finditer(r"`([^`]+)`", text):
        out.append(_inline_plain(text[pos:m.start()], base))
        out.append(f"<code>{html.escape(m.group(1))}</code>")
        pos = m.end()
    out.append(_inline_plain(text[pos:], base))
    return "".join(out)


def _inline_plain(text: str, base: Path | None) -> str:
    parts, pos = [], 0
    for m in re.finditer(r"!\[([^\]]*)\]\(([^)\s]+)\)|\[([^\]]+)\]\(([^)\s]+)\)", text):
        parts.append(_emph(html.escape(text[pos:m.start()], quote=False)))
        if m.group(2) is not None:
            parts.append(image_tag(m.group(2), m.group(1), base))
        else:
            href = m.group(4)
            label = _emph(html.escape(m.group(3), quote=False))
            # links are shown, not made: the page makes no requests and a relative file may not travel with it
            parts.append(f"{label} (<code>{html.escape(href)}</code>)")
        pos = m.end()
    parts.append(_emph(html.escape(text[pos:], quote=False)))
    return "".join(parts)


def _emph(s: str) -> str:
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    s = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", s)
    return s


def image_tag(src: str, alt: str, base: Path | None) -> str:
    """An embedded ``<img>`` (data URI) or, when the file is missing, a visible note (never a broken image)."""
    uri = png_data_uri((base / src) if base is not None else src)
    if uri is None:
        return f'<span class="missing">[figure {html.escape(src)} not found]</span>'
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


def _table(lines: Sequence[str], base: Path | None) -> str:
    def cells(line: str) -> list[str]:
        s = line.strip()
        if s.startswith("|"):
            s = s[1:]
        if s.endswith("|"):
            s = s[:-1]
        return [c.strip() for c in s.split("|")]

    head = cells(lines[0])
    body = [cells(line) for line in lines[2:]]
    out = ["<table><thead><tr>" + "".join(f"<th>{_inline(c, base)}</th>" for c in head) + "</tr></thead><tbody>"]
    for row in body:
        out.append("<tr>" + "".join(f"<td>{_inline(c, base)}</td>" for c in row) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def markdown_to_html(md: str, base: str | Path | None = None) -> str:
    """The body HTML of a Markdown report; image paths are resolved against ``base``."""
    base = Path(base) if base is not None else None
    lines = md.splitlines()
    out: list[str] = []
    i = 0
    para: list[str] = []

    def flush() -> None:
        if para:
            out.append("<p>" + _inline(" ".join(para), base) + "</p>")
            para.clear()

    while i < len(lines):
        line = lines[i]
        s = line.strip()
        if s.startswith("```"):
            flush()
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith("```"):
                j += 1
            out.append("<pre><code>" + html.escape("\n".join(lines[i + 1:j])) + "</code></pre>")
            i = j + 1
            continue
        if s.startswith("<details") or s.startswith("</details") or s.startswith("<summary"):
            flush()  # the writers' own collapsible blocks (no other raw HTML is passed through)
            out.append(s if re.fullmatch(r"</?details>|<summary>[^<>]*</summary>|<details><summary>[^<>]*</summary>",
                                         s) else html.escape(s))
            i += 1
            continue
        m = re.match(r"^(#{1,6})\s+(.*)$", s)
        if m:
            flush()
            n = len(m.group(1))
            out.append(f"<h{n}>{_inline(m.group(2), base)}</h{n}>")
            i += 1
            continue
        if s.startswith("|") and i + 1 < len(lines) and re.match(r"^\|?\s*:?-{3,}", lines[i + 1].strip()):
            flush()
            j = i
            while j < len(lines) and lines[j].strip().startswith("|"):
                j += 1
            out.append(_table(lines[i:j], base))
            i = j
            continue
        if re.match(r"^[-*]\s+", s):
            flush()
            items = []
            while i < len(lines) and re.match(r"^\s*[-*]\s+", lines[i]):
                item = re.sub(r"^\s*[-*]\s+", "", lines[i])
                i += 1
                while i < len(lines) and lines[i].startswith("  ") and lines[i].strip() \
                        and not re.match(r"^\s*[-*]\s+", lines[i]):
                    item += " " + lines[i].strip()
                    i += 1
                items.append(f"<li>{_inline(item, base)}</li>")
            out.append("<ul>" + "".join(items) + "</ul>")
            continue
        if s in ("---", "***"):
            flush()
            out.append("<hr>")
            i += 1
            continue
        if not s:
            flush()
            i += 1
            continue
        para.append(s)
        i += 1
    flush()
    return "\n".join(out)


def page(title: str, body: str, footer: str = "") -> str:
    """A complete, self-contained HTML document (inline CSS, no scripts, no external resources)."""
    foot = f'<p class="meta">{footer}</p>' if footer else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n{body}\n{foot}\n</body></html>\n")


def json_block(title: str, data: Any, limit: int = 200_000) -> str:
    """A collapsible block with pretty JSON (cut at ``limit`` characters, with a note)."""
    text = json.dumps(data, indent=1, default=str)
    note = ""
    if len(text) > limit:
        text, note = text[:limit], f" (first {limit:,} characters)"
    return (f"<details><summary>{html.escape(title)}{note}</summary><pre><code>{html.escape(text)}</code></pre>"
            "</details>")


def report_page(folder: str | Path) -> str:
    """A study's output folder as one HTML page: its ``summary.md`` (figures embedded), or every
    sub-report's when the folder has none at its top, then each ``results.json`` as raw numbers."""
    from seqgap.errors import SeqgapError

    folder = Path(folder)
    if not folder.is_dir():
        raise SeqgapError(f"report: {folder} is not a folder")
    summaries = [folder / "summary.md"] if (folder / "summary.md").is_file() else sorted(folder.rglob("summary.md"))
    results = sorted(folder.rglob("results.json"))
    if not summaries and not results:
        raise SeqgapError(f"report: {folder} holds no summary.md or results.json (is it a study's output folder?)")
    parts, title = [], None
    for s in summaries:
        md = s.read_text()
        m = re.search(r"^#\s+(.+)$", md, flags=re.M)
        title = title or (m.group(1).strip() if m else None)
        parts.append(markdown_to_html(md, base=s.parent))
    if results:
        parts.append("<h2>Raw numbers</h2><p class=\"meta\">The <code>results.json</code> files the report writers "
                     "wrote next to their summaries.</p>")
        for r in results:
            try:
                data = json.loads(r.read_text())
            except ValueError:
                continue
            parts.append(json_block(str(r.relative_to(folder)), data))
    from seqgap import __version__

    return page(title or f"seqgap report: {folder.name}", "\n".join(parts),
                footer=f"Rendered by seqgap {__version__} from {html.escape(str(folder))}.")


def runs_page(rows: Sequence[dict[str, Any]], source: str) -> str:
    """A run store's training runs as one table page (``rows``: the store's records, read by the caller)."""
    from seqgap import __version__

    head = ["run", "model", "size", "params", "task", "params of task", "L", "N", "lr", "seed", "success",
            "best val loss", "accuracy", "steps", "s"]
    body = []
    for r in rows:
        c, s = r.get("config", {}), r.get("summary", {})
        t = c.get("train", {})
        acc = s.get("gen_acc", s.get("val_seq_acc"))
        body.append([r.get("id", "")[:12], c.get("model"), c.get("model_size") or "custom",
                     f"{s['n_params']:,}" if isinstance(s.get("n_params"), int) else "-", c.get("task"),
                     json.dumps(c.get("task_params", {})), c.get("max_length"), c.get("n_train"), t.get("lr"),
                     t.get("seed"), "yes" if s.get("success") else "no",
                     f"{s['best_val_loss']:.3g}" if isinstance(s.get("best_val_loss"), (int, float)) else "-",
                     f"{acc:.3f}" if isinstance(acc, (int, float)) else "-", s.get("steps"),
                     f"{s['seconds']:.0f}" if isinstance(s.get("seconds"), (int, float)) else "-"])
    table = ["<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    table += ["<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in body]
    table.append("</tbody></table>")
    body_html = (f"<h1>Run store</h1><p class=\"meta\">{len(rows)} training runs in <code>{html.escape(source)}</code> "
                 "(accuracy: free-generation answer accuracy where measured, else teacher-forced sequence "
                 "accuracy).</p>" + "\n".join(table))
    return page(f"seqgap runs: {source}", body_html, footer=f"Rendered by seqgap {__version__}.")


__all__ = ["STYLE", "image_tag", "json_block", "markdown_to_html", "page", "png_data_uri", "report_page", "runs_page"]
