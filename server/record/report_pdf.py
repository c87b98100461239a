"""The consultation report as a PDF (ReportLab). Draws a `ReportData`; reads nothing else but the
snapshot PNGs it names. Every section is always present, saying so when it is empty, so a reader
knows "no print jobs" was checked rather than forgotten."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

import orjson
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.platypus import Image, KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
from reportlab.platypus.flowables import Flowable

from server.record.report_data import ReportData

SECTIONS = (
    "1. Case summary",
    "2. Participants",
    "3. Timeline",
    "4. Plan",
    "5. Snapshots",
    "6. Design artifacts and provenance",
    "7. Print jobs",
    "8. Recording",
)
NONE = "-"
IMAGE_MAX_W = 16 * cm
IMAGE_MAX_H = 10 * cm
_styles = getSampleStyleSheet()
BODY = ParagraphStyle("body", parent=_styles["BodyText"], fontSize=9, leading=11.5)
SMALL = ParagraphStyle("small", parent=BODY, fontSize=7.5, leading=9.5, textColor=colors.HexColor("#444444"))
CELL = ParagraphStyle("cell", parent=BODY, fontSize=8, leading=10)
H1 = ParagraphStyle("h1", parent=_styles["Title"], fontSize=18, leading=22, alignment=0, spaceAfter=4)
H2 = ParagraphStyle(
    "h2", parent=_styles["Heading2"], fontSize=12.5, leading=15, spaceBefore=10, spaceAfter=4, keepWithNext=1,
    textColor=colors.HexColor("#1d3557"),
)  # fmt: skip
TABLE_STYLE = TableStyle(
    [
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eef5")),
        ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#b8c4d0")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
    ]
)


def when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC") if ms else NONE


def _p(text: Any, style: ParagraphStyle = BODY) -> Paragraph:
    return Paragraph(escape(str(text if text is not None else "")), style)


def _table(header: list[str], rows: list[list[Any]], widths: list[float]) -> Table:
    data = [[_p(h, CELL) for h in header]] + [[c if isinstance(c, Flowable) else _p(c, CELL) for c in r] for r in rows]
    table = Table(data, colWidths=[w * cm for w in widths], repeatRows=1)
    table.setStyle(TABLE_STYLE)
    return table


def _none(text: str) -> Paragraph:
    return _p(text, SMALL)


def measurement(annotation: dict[str, Any]) -> str:
    data = annotation.get("data", {})
    for key, unit in (("value_mm", "mm"), ("length_mm", "mm"), ("value_deg", "°")):
        if key in data:
            extra = f", Ø {data['diameter_mm']} mm" if "diameter_mm" in data else ""
            return f"{data[key]:.1f} {unit}{extra}"
    if "text" in data:
        return str(data["text"])[:200]
    return ""


def _case(data: ReportData) -> list[Flowable]:
    if data.case is None:
        return [_none("No case is attached to this room.")]
    c = data.case
    out: list[Flowable] = [
        _table(
            ["Case", "Site", "Opened", "Description"],
            [[c["label"], c["site"], when(c["created_at_ms"]), c["description"] or NONE]],
            [3.5, 3.5, 3.2, 7.3],
        ),
        Spacer(1, 4),
    ]
    studies = [[s["modalities"] or NONE, s["description"] or NONE, s["series"], s["instances"]] for s in c["studies"]]
    out.append(
        _table(["Modality", "Study", "Series", "Images"], studies, [2.5, 10, 2.5, 2.5])
        if studies
        else _none("No imaging stored for this case.")
    )
    out.append(_p("De-identified: the patient's identity stays with the owning site and is not in this report.", SMALL))
    return out


def _plan(data: ReportData) -> list[Flowable]:
    plan = data.plan
    if plan is None:
        return [_none("No plan has been proposed in this room.")]
    out: list[Flowable] = [
        _p(
            f"Version {plan['version']} — {plan['status'].upper()} — proposed by {plan['proposed_by']} "
            f"on {when(plan['proposed_at_ms'])}. Content sha256 {plan['content_hash']}"
        )
    ]
    for d in plan["decisions"]:
        comment = f": “{d['comment']}”" if d["comment"] else ""
        out.append(
            _p(f"{d['decision'].capitalize()} by {d['who']} on {when(d['at_ms'])} (password confirmed){comment}")
        )
    if plan["notes"]:
        out.append(_p(f"Notes: {plan['notes']}"))
    rows = [[a.get("label") or a["id"], a["kind"], measurement(a), a.get("version", "")] for a in plan["annotations"]]
    out.append(Spacer(1, 3))
    out.append(
        _table(["Annotation", "Kind", "Measurement", "Ver."], rows, [5.5, 2.5, 8, 1.5])
        if rows
        else _none("The plan holds no annotations.")
    )
    pinned = [[a["name"], a["kind"], a["version"], a["artifact_id"]] for a in plan["artifacts"]]
    out.append(Spacer(1, 3))
    out.append(
        _table(["Design artifact", "Kind", "Ver.", "Artifact id"], pinned, [6, 2.5, 1.5, 7.5])
        if pinned
        else _none("The plan pins no design artifacts.")
    )
    older = [f"v{h['version']} {h['status']}" + ("" if h["current"] else " (superseded)") for h in data.plan_history]
    out.append(_p("Versions: " + ", ".join(older), SMALL))
    return out


def _snapshots(data: ReportData) -> list[Flowable]:
    if not data.snapshots:
        return [_none("No snapshots were captured.")]
    out: list[Flowable] = []
    for s in data.snapshots:
        scale = min(IMAGE_MAX_W / max(s["width"], 1), IMAGE_MAX_H / max(s["height"], 1))
        image = Image(str(s["image_path"]), width=s["width"] * scale, height=s["height"] * scale)
        view = ""
        if s["camera"]:
            cam = s["camera"]
            view = f"camera at {cam['position']} looking at {cam['target']}, fov {cam['fov_deg']}°"
        if s["slice"]:
            view = "slice " + orjson.dumps(s["slice"]).decode()[:200]
        models = ", ".join(f"{m['id']} v{m.get('version') or '?'}" for m in s["visible_models"]) or "none listed"
        caption = _p(f"{s['label']} — {s['by']}, {when(s['at_ms'])}; {view}; visible models: {models}", SMALL)
        out.append(KeepTogether([image, caption, Spacer(1, 6)]))
    return out


def _artifacts(data: ReportData) -> list[Flowable]:
    if not data.artifacts:
        return [_none("No design artifacts in this case.")]
    rows = []
    for a in data.artifacts:
        p = a["provenance"]
        made = f"{p['operation'] or 'upload'} from {', '.join(p['inputs']) or '—'}"
        libs = ", ".join(f"{k} {v}" for k, v in sorted(p["libraries"].items()))
        files = ", ".join(f"{fmt} {sha[:12]}" for fmt, sha in a["files"].items())
        rows.append(
            [f"{a['name']} v{a['version']}", a["kind"], f"{made}. {libs}", f"{a['by']}, {when(a['at_ms'])}", files]
        )
    return [_table(["Artifact", "Kind", "Provenance", "Made by", "Files (sha256)"], rows, [3.6, 1.6, 6, 3, 3.3])]


def _prints(data: ReportData) -> list[Flowable]:
    if not data.print_jobs:
        return [_none("No print jobs have been recorded for this case.")]
    rows = [
        [j["id"], j["artifact"], j["printer"], j["state"], when(j.get("at_ms")), j.get("detail", "")]
        for j in data.print_jobs
    ]
    return [_table(["Job", "Artifact", "Printer", "Outcome", "When", "Detail"], rows, [2.6, 4, 2.4, 2, 3, 3.5])]


def _recording(data: ReportData) -> list[Flowable]:
    if not data.recordings:
        return [_none("No recording reference: the consultation was not recorded.")]
    rows = [
        [f"{r['name']} v{r['version']}", r["id"], when(r["at_ms"]), r.get("duration_s") or NONE,
         ", ".join(f"{k} {v[:12]}" for k, v in r["files"].items())]
        for r in data.recordings
    ]  # fmt: skip
    return [
        _table(["Recording", "Reference (artifact id)", "Recorded", "Seconds", "Files"], rows, [3.5, 5, 3.2, 1.8, 4])
    ]


def render(data: ReportData) -> bytes:
    buffer = io.BytesIO()
    title = f"Consultation report — {data.case['label'] if data.case else data.room['title']}"

    def decorate(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 7.5)
        canvas.setFillColor(colors.HexColor("#555555"))
        canvas.drawString(
            2 * cm, 1.2 * cm, f"Trinity · {title} · de-identified · generated {when(data.generated_at_ms)}"
        )
        canvas.drawRightString(A4[0] - 2 * cm, 1.2 * cm, f"page {doc.page}")
        canvas.restoreState()

    doc = SimpleDocTemplate(
        buffer, pagesize=A4, leftMargin=1.8 * cm, rightMargin=1.8 * cm, topMargin=1.6 * cm, bottomMargin=1.8 * cm,
        title=title, author="Trinity", subject="Consultation report",
    )  # fmt: skip
    story: list[Flowable] = [
        _p(title, H1),
        _p(
            f"Room “{data.room['title']}” ({data.room['site']}) · generated {when(data.generated_at_ms)} "
            f"by {data.generated_by}",
            SMALL,
        ),
    ]
    participants = [[p["name"], p["site"], p["role"], when(p["first_join_ms"])] for p in data.participants]
    timeline = [[when(t["ts_ms"]), t["who"], t["what"], t["detail"]] for t in data.timeline]
    bodies: list[list[Flowable]] = [
        _case(data),
        [_table(["Participant", "Site", "Room role", "First joined"], participants, [5, 5, 3, 4.5])],
        [_table(["When", "Who", "What", "Detail"], timeline, [3.3, 3.7, 4, 6.5])]
        if timeline
        else [_none("Nothing recorded yet.")],
        _plan(data),
        _snapshots(data),
        _artifacts(data),
        _prints(data),
        _recording(data),
    ]
    for heading, body in zip(SECTIONS, bodies, strict=True):
        # A heading never ends a page alone: it goes with its section's first block.
        story.append(KeepTogether([_p(heading, H2), body[0]]))
        story.extend(body[1:])
    if data.truncated:
        left = ", ".join(f"{n} more {section}" for section, n in data.truncated.items())
        story.append(_p(f"Limits applied: {left} not shown.", SMALL))
    doc.build(story, onFirstPage=decorate, onLaterPages=decorate)
    return buffer.getvalue()
