"""REST for imaging: uploads into a case, ingest reports, series and their volumes, slices, bone models.

Heavy work is a job (`server/imaging/tasks.py`): an upload is spooled to disk and handed to an ingest
job; a model is built by a job whose result appears in the room. Only the owning site puts data into a
case; everyone who may see the case (room members of other sites included) sees de-identified data.
"""

from __future__ import annotations

import asyncio
import shutil
from typing import Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from sqlmodel import col, select

from server.artifacts import store as artifacts
from server.cases.api import require_case
from server.cases.models import Case
from server.core import audit
from server.core.auth import new_id
from server.core.errors import Forbidden, Invalid, NotFound, TrinityError
from server.core.jobs import JobView
from server.deps import CurrentPrincipal, SessionDep, client_ip
from server.imaging import repository as repo
from server.imaging.deps import job_room, owning_site_writer, submit_job
from server.imaging.label_map_files import identify_label_map_file
from server.imaging.models import IngestReport
from server.imaging.slice_service import geometry_of, plane_layouts, render_slice
from server.imaging.uploads import spool_multipart

router = APIRouter(prefix="/api/cases/{case_id}/imaging", tags=["imaging"])


@router.post("/uploads", status_code=202)
async def upload(
    case_id: str, principal: CurrentPrincipal, request: Request, room_id: str | None = None
) -> dict[str, Any]:
    """DICOM files or zip archives as multipart/form-data, streamed to disk, then ingested by a job."""
    settings = request.app.state.settings

    def check() -> tuple[Case, str | None]:
        with request.app.state.db.session() as db:
            case = owning_site_writer(db, principal, case_id)
            return case, job_room(db, principal, case_id, room_id)

    case, room = await request.app.state.db.run_read(check)
    upload_id = new_id()
    folder = settings.spool_dir / upload_id
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
        "source": "upload",
        "spool": str(folder),
        "files": [{"name": p.name, "path": p.path.name, "size": p.size} for p in parts],
    }
    job = await submit_job(request, principal, "imaging.ingest", params, room, key=f"upload:{upload_id}")

    def log() -> None:
        with request.app.state.db.session() as db:
            audit.record_by(
                db,
                principal,
                "imaging.upload",
                target_type="case",
                target_id=case_id,
                ip=client_ip(request),
                room_id=room,
                files=len(parts),
                bytes=sum(p.size for p in parts),
            )

    await request.app.state.db.run_write(log)
    return {"upload_id": upload_id, "files": len(parts), "job": job}


@router.get("/reports")
def reports(case_id: str, principal: CurrentPrincipal, db: SessionDep) -> list[dict[str, Any]]:
    require_case(db, principal, case_id)
    rows = db.exec(
        select(IngestReport).where(IngestReport.case_id == case_id).order_by(col(IngestReport.created_at_ms).desc())
    ).all()
    return [r.model_dump() for r in rows]


@router.get("/reports/{report_id}")
def report(case_id: str, report_id: str, principal: CurrentPrincipal, db: SessionDep) -> dict[str, Any]:
    require_case(db, principal, case_id)
    row = db.get(IngestReport, report_id)
    if row is None or row.case_id != case_id:
        raise NotFound("no such ingest report")
    return row.model_dump()


@router.get("/series")
def series(case_id: str, principal: CurrentPrincipal, db: SessionDep) -> list[dict[str, Any]]:
    require_case(db, principal, case_id)
    out = []
    for r in repo.series_of(db, case_id):
        s = r["series"]
        volume = artifacts.latest(db, repo.volume_lineage(s.id))
        out.append(
            {
                "id": s.id,
                "series_uid": s.series_uid,
                "study_uid": r["study"].study_uid,
                "modality": s.modality,
                "description": s.description,
                "number": s.number,
                "instances": r["instances"],
                "volume": None if volume is None else {"artifact_id": volume.id, **volume.meta},
            }
        )
    return out


class ModelRequest(BaseModel):
    name: str = Field(default="Bone", min_length=1, max_length=200)
    preset: Literal["bone", "compact_bone", "spongial_bone", "soft_tissue", "muscle", "fat", "custom"] = "bone"
    hu_min: float | None = None
    hu_max: float | None = None
    seed_lps: tuple[float, float, float] | None = None  # keep the component under this point (a marker)
    keep: Literal["largest", "seed", "all"] = "largest"
    closing_mm: float = Field(default=1.0, ge=0, le=10)
    fill_holes: bool = True
    smoothing_iterations: int = Field(default=20, ge=0, le=200)
    target_faces: int | None = Field(default=None, ge=1000)
    room_id: str | None = None
    lineage_id: str | None = Field(default=None, max_length=64)  # a new version of this model


@router.post("/series/{series_id}/models", status_code=202)
async def build_model(
    case_id: str, series_id: str, body: ModelRequest, principal: CurrentPrincipal, request: Request
) -> JobView:
    settings = request.app.state.settings
    faces = body.target_faces or settings.model_default_faces
    if faces > settings.model_max_faces:
        raise Invalid(f"target_faces is above the limit of {settings.model_max_faces}")
    if body.preset == "custom" and (body.hu_min is None or body.hu_max is None):
        raise Invalid("a custom preset needs hu_min and hu_max")
    if body.keep == "seed" and body.seed_lps is None:
        raise Invalid("keep=seed needs seed_lps (a point in patient LPS mm)")

    def check() -> tuple[Case, str | None]:
        with request.app.state.db.session() as db:
            case = require_case(db, principal, case_id)
            repo.get_series(db, case_id, series_id)
            room = job_room(db, principal, case_id, body.room_id)
            if room is None and case.site_id != principal.site_id:
                raise Forbidden("start model building from a room that shows this case")
            return case, room

    case, room = await request.app.state.db.run_read(check)
    params = body.model_dump(exclude={"room_id"}) | {
        "case_id": case_id,
        "site_id": case.site_id,
        "series_id": series_id,
        "target_faces": faces,
        # One model per series, preset and room: rebuilding it in the same room makes version 2.
        "lineage_id": body.lineage_id or f"model-{series_id[:10]}-{body.preset}-{(room or 'case')[:10]}",
    }
    return await submit_job(request, principal, "imaging.build_model", params, room)


@router.get("/series/{series_id}/volume")
def volume(
    case_id: str, series_id: str, principal: CurrentPrincipal, request: Request, db: SessionDep
) -> dict[str, Any]:
    """The volume's geometry for the slice viewer; opening it is the audited "view slices" access (the
    slice images themselves are not audited one by one)."""
    require_case(db, principal, case_id)
    repo.get_series(db, case_id, series_id)
    row = artifacts.latest(db, repo.volume_lineage(series_id))
    if row is None:
        raise NotFound("this series has no volume (not a CT/MR stack, or refused: see the ingest report)")
    audit.record_by(
        db, principal, "imaging.view_series", target_type="series", target_id=series_id, ip=client_ip(request)
    )
    return {"artifact_id": row.id, **row.meta, "planes": plane_layouts(row.meta)}


@router.get("/series/{series_id}/volume/locate")
def locate_point(
    case_id: str,
    series_id: str,
    principal: CurrentPrincipal,
    db: SessionDep,
    point: str = Query(max_length=100, description="x,y,z in patient LPS mm"),
) -> dict[str, Any]:
    """Where a 3D point (the linked cursor) falls in each plane: slice index and pixel."""
    import numpy as np

    from server.imaging.slices import locate

    require_case(db, principal, case_id)
    repo.get_series(db, case_id, series_id)
    row = artifacts.latest(db, repo.volume_lineage(series_id))
    if row is None:
        raise NotFound("this series has no volume")
    try:
        xyz = np.array([float(v) for v in point.split(",")], dtype=np.float64)
        assert xyz.shape == (3,) and np.isfinite(xyz).all()
    except (ValueError, AssertionError):
        raise Invalid("point must be three numbers x,y,z in LPS mm") from None
    return {
        plane: {k: v.item() if hasattr(v, "item") else v for k, v in vars(found).items()}
        for plane, found in locate(geometry_of(row.meta), xyz).items()
    }


@router.get("/series/{series_id}/slices/{plane}/{index}.png")
async def slice_png(
    case_id: str,
    series_id: str,
    plane: Literal["axial", "coronal", "sagittal"],
    index: int,
    principal: CurrentPrincipal,
    request: Request,
    window: str = Query(default="bone", max_length=40, description="bone | soft_tissue | lung | <width>,<level>"),
) -> Response:
    def check() -> Any:
        with request.app.state.db.session() as db:
            require_case(db, principal, case_id)
            repo.get_series(db, case_id, series_id)
            row = artifacts.latest(db, repo.volume_lineage(series_id))
            if row is None:
                raise NotFound("this series has no volume")
            return row  # opening the series' volume is the audited access, not each image

    row = await request.app.state.db.run_read(check)
    png = await asyncio.to_thread(render_slice, request.app.state, row, plane, index, window)
    return Response(png, media_type="image/png", headers={"cache-control": "private, max-age=3600"})


class PacsQuery(BaseModel):
    patient_id: str | None = Field(default=None, max_length=64)  # default: the case's own patient
    study_date: str | None = Field(default=None, max_length=17)
    accession_number: str | None = Field(default=None, max_length=64)
    modalities: str | None = Field(default=None, max_length=16)


class PacsPull(BaseModel):
    study_uid: str = Field(min_length=1, max_length=64)
    room_id: str | None = None


@router.post("/pacs/query")
async def pacs_query(
    case_id: str, body: PacsQuery, principal: CurrentPrincipal, request: Request
) -> list[dict[str, Any]]:
    """The owning site asks its PACS which studies it has for this case's patient (identities included:
    this answer never leaves the owning site)."""
    from server.cases.models import CaseIdentity
    from server.imaging.pacs_client import PacsError, StudyQuery, search_studies
    from server.imaging.pacs_pull import connection

    settings = request.app.state.settings
    url, auth, timeouts, verify = connection(settings)

    def check() -> str | None:
        with request.app.state.db.session() as db:
            owning_site_writer(db, principal, case_id)
            identity = db.get(CaseIdentity, case_id)
            audit.record_by(
                db, principal, "imaging.pacs_query", target_type="case", target_id=case_id, ip=client_ip(request)
            )
            return body.patient_id or (identity.patient_id if identity else None)

    patient_id = await request.app.state.db.run_write(check)
    if not (patient_id or body.accession_number or body.study_date):
        raise Invalid("give a patient_id, accession_number or study_date (the case has no patient ID)")
    query = StudyQuery(
        patient_id=patient_id,
        study_date=body.study_date,
        accession_number=body.accession_number,
        modalities_in_study=body.modalities,
    )
    try:
        return await asyncio.to_thread(search_studies, url, query, auth=auth, timeouts=timeouts, verify=verify)
    except (PacsError, ValueError) as exc:
        raise PacsUnavailable(f"the PACS query failed: {exc}") from None


@router.post("/pacs/pull", status_code=202)
async def pacs_pull(case_id: str, body: PacsPull, principal: CurrentPrincipal, request: Request) -> JobView:
    from server.imaging.pacs_pull import connection

    connection(request.app.state.settings)  # refuse now when no PACS is configured

    def check() -> tuple[Case, str | None]:
        with request.app.state.db.session() as db:
            case = owning_site_writer(db, principal, case_id)
            room = job_room(db, principal, case_id, body.room_id)
            audit.record_by(
                db,
                principal,
                "imaging.pacs_pull",
                target_type="case",
                target_id=case_id,
                ip=client_ip(request),
                study_uid=body.study_uid,
            )
            return case, room

    case, room = await request.app.state.db.run_write(check)
    spool = request.app.state.settings.spool_dir / f"pacs-{new_id()}"  # removed once the job has ended
    params = {
        "case_id": case.id,
        "site_id": case.site_id,
        "label": case.label,
        "study_uid": body.study_uid,
        "spool": str(spool),
    }
    return await submit_job(request, principal, "imaging.pacs_pull", params, room)


class PacsUnavailable(TrinityError):
    status = 502
    code = "pacs_unavailable"


@router.post("/labelmaps", status_code=202)
async def upload_label_map(
    case_id: str,
    principal: CurrentPrincipal,
    request: Request,
    room_id: str | None = None,
    label: int | None = Query(default=None, ge=0, description="the label value to model; default every nonzero"),
    name: str = Query(default="Segmentation", min_length=1, max_length=200),
    target_faces: int | None = Query(default=None, ge=1000),
) -> JobView:
    """A label map made elsewhere (3D Slicer's NRRD or NIfTI), one file as multipart/form-data, turned into
    a model by a job, instead of thresholding a series here. An empty file, or one that is neither NRRD
    nor NIfTI, is refused at once (label_map_empty, label_map_format)."""
    settings = request.app.state.settings
    faces = target_faces or settings.model_default_faces
    if faces > settings.model_max_faces:
        raise Invalid(f"target_faces is above the limit of {settings.model_max_faces}")

    def check() -> tuple[Case, str | None]:
        with request.app.state.db.session() as db:
            case = owning_site_writer(db, principal, case_id)
            return case, job_room(db, principal, case_id, room_id)

    case, room = await request.app.state.db.run_read(check)
    folder = settings.spool_dir / new_id()
    parts = await spool_multipart(
        request.headers.get("content-type", ""),
        request.stream(),
        folder,
        max_bytes=settings.upload_max_bytes,
        max_files=1,
    )
    try:  # refused now, from its first bytes, rather than by a failed job
        await asyncio.to_thread(identify_label_map_file, parts[0].path, parts[0].name)
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, folder, True)
        raise
    params = {
        "case_id": case.id,
        "site_id": case.site_id,
        "spool": str(folder),  # removed once the job has a final outcome (server/imaging/spool.py)
        "path": str(parts[0].path),
        "filename": parts[0].name,
        "label": label,
        "name": name,
        "target_faces": faces,
        "lineage_id": f"labelmap-{folder.name[:12]}",
    }
    return await submit_job(request, principal, "imaging.labelmap_model", params, room)
