"""DICOMweb for a case's de-identified studies, rooted at /api/cases/{case_id}/dicom-web so a viewer such
as OHIF can be pointed at one case: QIDO-RS (search), WADO-RS (instances, metadata, frames), STOW-RS.

Only de-identified data is ever stored, so this serves nothing else. Retrievals are audited as patient
data access. STOW-RS spools the parts and runs the same ingest job as an upload; the response waits for
it (up to `stow_wait_s`) and reports every instance as stored or failed with the reason.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from sqlmodel import Session

from server.cases.api import require_case
from server.core import audit
from server.core.auth import Principal
from server.core.errors import NotFound
from server.deps import CurrentPrincipal, client_ip
from server.imaging import repository as repo
from server.imaging.models import ImagingInstance

router = APIRouter(prefix="/api/cases/{case_id}/dicom-web", tags=["dicomweb"])
DICOM_JSON = "application/dicom+json"
STOW_WAIT_S = 120.0


def _attr(vr: str, *values: Any) -> dict[str, Any]:
    values_clean = [v for v in values if v not in (None, "")]
    return {"vr": vr, "Value": values_clean} if values_clean else {"vr": vr}


def _in_db(request: Request, principal: Principal, case_id: str, fn: Callable[[Session], Any]) -> Any:
    def run() -> Any:
        with request.app.state.db.session() as db:
            require_case(db, principal, case_id)
            return fn(db)

    return request.app.state.db.run_read(run)


def _json(body: Any) -> Response:
    import orjson

    return Response(orjson.dumps(body), media_type=DICOM_JSON)


@router.get("/studies")
async def search_studies(case_id: str, principal: CurrentPrincipal, request: Request) -> Response:
    wanted = request.query_params.get("StudyInstanceUID") or request.query_params.get("0020000D")
    base = str(request.url_for("search_studies", case_id=case_id))
    rows = await _in_db(request, principal, case_id, lambda db: repo.studies(db, case_id, wanted))
    return _json(
        [
            {
                "0020000D": _attr("UI", r["study"].study_uid),
                "00081030": _attr("LO", r["study"].description),
                "00080061": _attr("CS", *r["study"].modalities.split("\\")),
                "00201206": _attr("IS", r["series"]),
                "00201208": _attr("IS", r["instances"]),
                "00080190": _attr("UR", f"{base}/{r['study'].study_uid}"),
            }
            for r in rows
        ]
    )


@router.get("/studies/{study_uid}/series")
async def search_series(case_id: str, study_uid: str, principal: CurrentPrincipal, request: Request) -> Response:
    rows = await _in_db(request, principal, case_id, lambda db: repo.series_of(db, case_id, study_uid))
    return _json(
        [
            {
                "0020000D": _attr("UI", r["study"].study_uid),
                "0020000E": _attr("UI", r["series"].series_uid),
                "00080060": _attr("CS", r["series"].modality),
                "0008103E": _attr("LO", r["series"].description),
                "00200011": _attr("IS", r["series"].number),
                "00201209": _attr("IS", r["instances"]),
            }
            for r in rows
        ]
    )


INSTANCE_TAGS = ("00080016", "00080018", "00200013", "00280010", "00280011", "00280008", "0020000D", "0020000E")


@router.get("/studies/{study_uid}/series/{series_uid}/instances")
async def search_instances(
    case_id: str, study_uid: str, series_uid: str, principal: CurrentPrincipal, request: Request
) -> Response:
    rows = await _in_db(
        request,
        principal,
        case_id,
        lambda db: repo.instances_of(db, case_id, study_uid=study_uid, series_uid=series_uid),
    )
    return _json([{tag: row.header[tag] for tag in INSTANCE_TAGS if tag in row.header} for row in rows])


async def _instances(
    request: Request, principal: Principal, case_id: str, action: str, **where: str
) -> list[ImagingInstance]:
    def run() -> list[ImagingInstance]:
        with request.app.state.db.session() as db:
            require_case(db, principal, case_id)
            rows = repo.instances_of(db, case_id, **where)
            if not rows:
                raise NotFound("no such study, series or instance in this case")
            audit.record_by(
                db,
                principal,
                action,
                target_type="case",
                target_id=case_id,
                ip=client_ip(request),
                instances=len(rows),
                **where,
            )
            return rows

    return await request.app.state.db.run_write(run)  # type: ignore[no-any-return]


def _multipart(parts: AsyncIterator[tuple[str, bytes | AsyncIterator[bytes]]], media_type: str) -> StreamingResponse:
    boundary = uuid.uuid4().hex

    async def body() -> AsyncIterator[bytes]:
        async for content_type, payload in parts:
            yield f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode()
            if isinstance(payload, bytes):
                yield payload
            else:
                async for chunk in payload:
                    yield chunk
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    return StreamingResponse(body(), media_type=f'multipart/related; type="{media_type}"; boundary={boundary}')


def _retrieve(request: Request, rows: list[ImagingInstance]) -> StreamingResponse:
    async def parts() -> AsyncIterator[tuple[str, bytes | AsyncIterator[bytes]]]:
        for row in rows:
            yield "application/dicom", await request.app.state.blobs.read_stream(row.blob_sha256)

    return _multipart(parts(), "application/dicom")


@router.get("/studies/{study_uid}")
async def retrieve_study(
    case_id: str, study_uid: str, principal: CurrentPrincipal, request: Request
) -> StreamingResponse:
    return _retrieve(request, await _instances(request, principal, case_id, "dicom.retrieve", study_uid=study_uid))


@router.get("/studies/{study_uid}/series/{series_uid}")
async def retrieve_series(
    case_id: str, study_uid: str, series_uid: str, principal: CurrentPrincipal, request: Request
) -> StreamingResponse:
    rows = await _instances(request, principal, case_id, "dicom.retrieve", study_uid=study_uid, series_uid=series_uid)
    return _retrieve(request, rows)


@router.get("/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}")
async def retrieve_instance(
    case_id: str, study_uid: str, series_uid: str, sop_uid: str, principal: CurrentPrincipal, request: Request
) -> StreamingResponse:
    rows = await _instances(
        request, principal, case_id, "dicom.retrieve", study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid
    )
    return _retrieve(request, rows)


@router.get("/studies/{study_uid}/metadata")
@router.get("/studies/{study_uid}/series/{series_uid}/metadata")
@router.get("/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/metadata")
async def metadata(
    case_id: str,
    study_uid: str,
    principal: CurrentPrincipal,
    request: Request,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> Response:
    where = {k: v for k, v in (("study_uid", study_uid), ("series_uid", series_uid), ("sop_uid", sop_uid)) if v}
    rows = await _instances(request, principal, case_id, "dicom.metadata", **where)
    base = str(request.url_for("search_studies", case_id=case_id))
    out = []
    for row in rows:
        header = dict(row.header)
        series = header["0020000E"]["Value"][0]
        uri = f"{base}/{study_uid}/series/{series}/instances/{row.sop_uid}/frames/1"
        header["7FE00010"] = {"vr": "OW", "BulkDataURI": uri}
        out.append(header)
    return _json(out)


@router.get("/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/frames/{frame_list}")
async def frames(
    case_id: str,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    frame_list: str,
    principal: CurrentPrincipal,
    request: Request,
) -> StreamingResponse:
    """Frames as uncompressed little-endian pixel data (the transfer syntax every viewer accepts)."""
    rows = await _instances(
        request, principal, case_id, "dicom.frames", study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid
    )
    try:
        numbers = [int(n) for n in frame_list.split(",")]
    except ValueError:
        raise NotFound("frame numbers must be integers, e.g. 1 or 1,2,3") from None
    path = request.app.state.blobs.path_of(rows[0].blob_sha256)
    from server.imaging.frames import read_frames

    data = await asyncio.to_thread(read_frames, path, numbers)

    async def parts() -> AsyncIterator[tuple[str, bytes | AsyncIterator[bytes]]]:
        for frame in data:
            yield "application/octet-stream", frame

    return _multipart(parts(), "application/octet-stream")


@router.post("/studies")
async def store_instances(case_id: str, principal: CurrentPrincipal, request: Request) -> Response:
    """STOW-RS: the parts are spooled and ingested like an upload (validated, de-identified); the answer
    lists every stored instance (by its de-identified UID) and every failure. 200 all stored, 202 some
    failed, 409 none stored."""
    from server.imaging.deps import job_room, owning_site_writer, submit_job
    from server.imaging.models import IngestReport
    from server.imaging.uploads import spool_multipart

    settings = request.app.state.settings

    def check() -> tuple[Any, str | None]:
        with request.app.state.db.session() as db:
            case = owning_site_writer(db, principal, case_id)
            return case, job_room(db, principal, case_id, None)

    case, room = await request.app.state.db.run_read(check)
    folder = settings.spool_dir / uuid.uuid4().hex
    parts = await spool_multipart(
        request.headers.get("content-type", ""),
        request.stream(),
        folder,
        max_bytes=settings.upload_max_bytes,
        max_files=settings.upload_max_files,
    )
    params = {
        "case_id": case.id,
        "site_id": case.site_id,
        "label": case.label,
        "source": "stow",
        "spool": str(folder),
        "files": [{"name": f"part {i + 1}", "path": p.path.name} for i, p in enumerate(parts)],
    }
    job = await submit_job(request, principal, "imaging.ingest", params, room, key=f"stow:{folder.name}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STOW_WAIT_S
    while job.state not in ("succeeded", "failed", "cancelled") and loop.time() < deadline:
        await asyncio.sleep(0.2)
        job = await request.app.state.jobs.get(job.id)
    if job.state != "succeeded":
        body = {"00081198": {"vr": "SQ"}, "00404005": _attr("DT")}
        status = 202 if job.state in ("queued", "running") else 409
        return Response(
            orjson_dumps(body), status_code=status, media_type=DICOM_JSON, headers={"x-trinity-job": job.id}
        )
    report_id = (job.result or {}).get("report_id")

    def lines() -> list[dict[str, Any]]:
        with request.app.state.db.session() as db:
            row = db.get(IngestReport, report_id)
            return list(row.files) if row else []

    outcome = await request.app.state.db.run_read(lines)
    base = str(request.url_for("search_studies", case_id=case_id))
    stored = [line for line in outcome if line.get("status") in ("accepted", "duplicate") and line.get("sop_uid")]
    failed = [line for line in outcome if line.get("status") == "rejected"]
    body = {
        "00081190": _attr("UR", base),
        "00081199": {"vr": "SQ", "Value": [{"00081155": _attr("UI", line["sop_uid"])} for line in stored]},
        "00081198": {
            "vr": "SQ",
            "Value": [
                {
                    "00081197": _attr("US", 0xC000),
                    "00000902": _attr("LO", f"{line['name']}: {line.get('message', '')}"[:1024]),
                }
                for line in failed
            ],
        },
    }
    status = 200 if not failed else 202 if stored else 409
    return Response(
        orjson_dumps(body),
        status_code=status,
        media_type=DICOM_JSON,
        headers={"x-trinity-job": job.id, "x-trinity-report": str(report_id)},
    )


def orjson_dumps(body: Any) -> bytes:
    import orjson

    return orjson.dumps(body)
