"""One self-contained HTML report: codebook, charts (inline SVG drawn here), tables, documents and the quote bank.

Everything is rendered by Jinja2 with autoescaping on, so participant text is always HTML-escaped;
nothing is fetched from the network (CSS inline, no fonts, no scripts from elsewhere). Documents and
the quote bank sit in collapsed ``<details>`` sections so the page stays light with thousands of
documents; printing opens them all.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import defaultdict
from pathlib import Path

from qualcode import __version__
from qualcode.export.atomic import atomic_file
from qualcode.writeup.analysis import (
    EXEMPLAR_RULE,
    ID_ATTRIBUTES,
    Analysis,
    code_label,
    cooccurrence_pairs,
    exemplars,
    percent,
    position,
    quote_bank_rows,
    short_definition,
    theme_by_group_table,
    trim_quote,
)
from qualcode.writeup.formats import cell_text

FALLBACK_COLOURS = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#D55E00",
    "#56B4E9",
    "#F0E442",
    "#999999",
)


def tint(colour: str, share: float) -> str:
    """``colour`` mixed with white: ``share`` of the colour (1: the colour itself)."""
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    mix = [round(255 - (255 - c) * share) for c in (red, green, blue)]
    return "#{:02X}{:02X}{:02X}".format(*mix)


def _ink(fill: str) -> str:
    red, green, blue = (int(fill[i : i + 2], 16) for i in (1, 3, 5))
    return "#000000" if 0.299 * red + 0.587 * green + 0.114 * blue > 140 else "#FFFFFF"


def _colour(code, index: int) -> str:
    colour = code.color or ""
    if len(colour) == 7 and colour.startswith("#"):
        try:
            int(colour[1:], 16)
            return colour.upper()
        except ValueError:
            pass
    return FALLBACK_COLOURS[index % len(FALLBACK_COLOURS)]


def _heat(value: float) -> tuple[str, str]:
    """A fill for 0..1 (white to a deep blue) and an ink that reads on it."""
    fill = tint("#1F5A96", 0.08 + 0.92 * max(0.0, min(1.0, value)) if value > 0 else 0.0)
    return fill, _ink(fill)


def report_context(analysis: Analysis, *, quotes: int = 2) -> dict:
    data = analysis.data
    codes = []
    for index, code in enumerate(analysis.codes):
        colour = _colour(code, index)
        passages = analysis.passages(code.code_id)
        people = analysis.participants_with(code.code_id)
        documents = analysis.documents_with(code.code_id)
        codes.append(
            {
                "id": code.code_id,
                "index": index,
                "label": code_label(code),
                "name": code.name,
                "colour": colour,
                "tint": tint(colour, 0.28),
                "ink": _ink(colour),
                "definition": short_definition(code.definition),
                "passages": len(passages),
                "documents": len(documents),
                "documents_pct": percent(len(documents), analysis.documents_total),
                "participants": len(people),
                "participants_pct": percent(len(people), analysis.participants_total),
                "exemplars": [
                    {
                        "text": trim_quote(segment.text, coding.evidence),
                        "who": who.label if who else segment.doc_id,
                        "document": segment.doc_id,
                        "anchor": _anchor(segment.segment_id),
                    }
                    for segment, coding, who in exemplars(analysis, code.code_id, quotes)
                ],
            }
        )
    by_id = {code["id"]: code for code in codes}
    # Prevalence bars: % of participants, passages beside.
    row_height, label_width, bar_width = 30, 190, 420
    bars = [
        {"y": 10 + i * row_height, "width": round(bar_width * c["participants_pct"] / 100, 1), **c}
        for i, c in enumerate(codes)
    ]
    prevalence = {
        "bars": bars,
        "height": 10 + len(codes) * row_height + 30,
        "label_width": label_width,
        "bar_width": bar_width,
        "ticks": [
            {"x": label_width + bar_width * t / 100, "label": f"{t}%"} for t in (0, 25, 50, 75, 100)
        ],
        "axis_y": 10 + len(codes) * row_height,
    }
    group_table = theme_by_group_table(analysis)
    sizes = defaultdict(int)
    for group in analysis.group_of_participant.values():
        sizes[group] += 1
    cell = max(64, min(130, 7 * max((len(g) for g in analysis.groups), default=8) + 12))
    heat_rows = []
    for r, code in enumerate(analysis.codes):
        people = analysis.participants_with(code.code_id)
        counts = defaultdict(int)
        for key in people:
            counts[analysis.group_of_participant[key]] += 1
        cells = []
        for c, group in enumerate(analysis.groups):
            share = counts[group] / sizes[group] if sizes[group] else 0.0
            fill, ink = _heat(share)
            cells.append(
                {
                    "x": 190 + c * cell,
                    "fill": fill,
                    "ink": ink,
                    "text": f"{round(100 * share)}%",
                    "title": f"{code_label(code)}, {group}: {counts[group]} of {sizes[group]} participants "
                    f"({percent(counts[group], sizes[group])}%)",
                }
            )
        heat_rows.append({"y": 60 + r * 34, "label": code.name, "cells": cells})
    group_heat = {
        "rows": heat_rows,
        "cell": cell,
        "width": 190 + len(analysis.groups) * cell + 10,
        "height": 60 + len(codes) * 34 + 10,
        "columns": [
            {
                "x": 190 + c * cell + cell / 2,
                "label": g if len(g) <= 17 else g[:16] + "…",
                "title": g,
                "n": sizes[g],
            }
            for c, g in enumerate(analysis.groups)
        ],
    }
    pairs = {(p["first"].code_id, p["second"].code_id): p for p in cooccurrence_pairs(analysis)}
    matrix_rows = []
    size = 56
    for r, first in enumerate(analysis.codes):
        cells = []
        for c, second in enumerate(analysis.codes):
            x = 190 + c * size
            if r == c:
                n = by_id[first.code_id]["passages"]
                cells.append(
                    {
                        "x": x,
                        "fill": "#EEEEEE",
                        "ink": "#333333",
                        "text": str(n),
                        "title": f"{code_label(first)}: {n} passages",
                    }
                )
                continue
            pair = pairs.get((first.code_id, second.code_id)) or pairs.get(
                (second.code_id, first.code_id)
            )
            fill, ink = _heat(min(1.0, pair["jaccard"] * 2.5))
            cells.append(
                {
                    "x": x,
                    "fill": fill,
                    "ink": ink,
                    "text": str(pair["both"]),
                    "title": f"{code_label(first)} and {code_label(second)}: {pair['both']} passages with both "
                    f"(Jaccard {pair['jaccard']:.2f}); {pair['participants']} participants with both",
                }
            )
        matrix_rows.append({"y": 70 + r * size, "label": first.name, "cells": cells})
    cooccurrence = {
        "rows": matrix_rows,
        "size": size,
        "width": 190 + len(codes) * size + 10,
        "height": 70 + len(codes) * size + 10,
        "columns": [
            {
                "x": 190 + c * size + size / 2,
                "label": code["name"] if len(code["name"]) <= 9 else code["name"][:8] + "…",
                "title": code["name"],
            }
            for c, code in enumerate(codes)
        ],
    }
    return {
        "title": f"Coding report: {data.name}",
        "source": data.source,
        "created": data.created,
        "generated": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "version": __version__,
        "counting": data.counting_rule(),
        "exemplar_rule": EXEMPLAR_RULE,
        "pending": data.pending_decisions,
        "eligible": len(analysis.eligible),
        "documents_total": analysis.documents_total,
        "participants_total": analysis.participants_total,
        "codes": codes,
        "prevalence": prevalence,
        "group_table": _table(group_table),
        "group_heat": group_heat,
        "by": group_table.title.removeprefix("Table 2. Themes by "),
        "cooccurrence": cooccurrence,
        "pairs": [
            {
                "first": code_label(p["first"]),
                "second": code_label(p["second"]),
                "both": p["both"],
                "either": p["either"],
                "jaccard": f"{p['jaccard']:.2f}",
                "participants": p["participants"],
            }
            for p in pairs.values()
        ],
        "documents": list(_documents(analysis, by_id)),
        "bank": [
            {
                "code": by_id[code.code_id],
                "rows": quote_bank_rows(analysis, code),
                "anchors": [_anchor(s.segment_id) for s in analysis.passages(code.code_id)],
            }
            for code in analysis.codes
        ],
    }


def _anchor(segment_id: str) -> str:
    return "s-" + "".join(ch if ch.isalnum() else "-" for ch in segment_id)


def _table(table) -> dict:
    """Table 2 for the page: the test, its p and any note in one column, so the table fits a printed
    page; without the test columns (no code could be tested), the notes say why."""
    tested = "Test" in table.header
    test_columns = [table.header.index(name) for name in ("Test", "p", "Note")] if tested else []
    keep = [i for i in range(len(table.header)) if i not in test_columns]
    rows = []
    for row in table.rows:
        cells = [cell_text(row[i], table.kinds[i]) for i in keep]
        if tested:
            test, p, note = test_columns
            shown = cell_text(row[p], "p")
            cells.append(
                f"{row[test]}, p {shown if shown.startswith('<') else '= ' + shown}"
                if row[p] is not None
                else row[note] or ""
            )
        rows.append(cells)
    return {
        "header": [*(table.header[i] for i in keep), *(["Test"] if tested else [])],
        "kinds": [*(table.kinds[i] for i in keep), *(["text"] if tested else [])],
        "notes": table.notes,
        "caption": table.caption,
        "rows": rows,
    }


def _documents(analysis: Analysis, by_id: dict):
    data = analysis.data
    per_document = defaultdict(list)
    for segment in data.segments:
        per_document[segment.doc_id].append(segment)
    all_codings = defaultdict(list)
    for coding in data.codings:
        all_codings[coding.segment_id].append(coding)
    for document in data.documents:
        segments = per_document.get(document.doc_id, [])
        rows, present = [], {}
        for segment in segments:
            codes = []
            for code_id in analysis.coded.get(segment.segment_id, ()):
                coding = analysis.best[(segment.segment_id, code_id)]
                code = by_id[code_id]
                present[code_id] = present.get(code_id, 0) + 1
                confidence = f" {coding.confidence:.2f}" if coding.confidence is not None else ""
                codes.append(
                    {
                        "code": code,
                        "source": coding.source,
                        "confidence": confidence,
                        "evidence": coding.evidence,
                    }
                )
            # The hover names code and source; the evidence is in the margin (once: it is the bulk of a big report).
            hover = "; ".join(f"{c['code']['name']}: {c['source']}{c['confidence']}" for c in codes)
            shadow = (
                ", ".join(
                    f"inset {4 * (i + 1)}px 0 0 {c['code']['colour']}" for i, c in enumerate(codes)
                )
                if len(codes) > 1
                else ""
            )
            who = analysis.participant_of.get(segment.segment_id)
            rows.append(
                {
                    "anchor": _anchor(segment.segment_id),
                    "speaker": segment.speaker or "",
                    "time": segment.timestamp or "",
                    "text": segment.text,
                    "codes": codes,
                    "hover": hover,
                    "first": codes[0]["code"]["index"] if codes else 0,
                    "shadow": shadow,
                    "interviewer": segment.is_interviewer,
                    "who": who.label if who else "",
                    "position": position(analysis, segment),
                }
            )
        people = list(dict.fromkeys(r["who"] for r in rows if r["who"]))
        yield {
            "id": document.doc_id,
            "kind": document.kind,
            "rows": rows,
            "people": people,
            "attributes": [
                (k, v) for k, v in document.attributes.items() if k not in ID_ATTRIBUTES
            ],
            "coded": sum(1 for r in rows if r["codes"]),
            "present": [
                (by_id[c], n)
                for c, n in sorted(present.items(), key=lambda item: list(by_id).index(item[0]))
            ],
        }


def render_report(analysis: Analysis, *, quotes: int = 2) -> str:
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("qualcode.writeup", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    return environment.get_template("report.html.j2").render(
        **report_context(analysis, quotes=quotes)
    )


def write_report(analysis: Analysis, output: str | os.PathLike[str], *, quotes: int = 2) -> Path:
    output = Path(output)
    html = render_report(analysis, quotes=quotes)
    with atomic_file(output) as temporary:
        temporary.write_text(html, encoding="utf-8")
    return output
