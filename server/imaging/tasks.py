"""Imaging job kinds: ingest (validate, de-identify, store, build volumes), build a bone model, a model
from a label map. They run in worker processes (server/core/worker_context.py gives them the database
and blob store) and are idempotent: a re-run after a crash finds what the first run stored. The spool
folder a job reads is removed by its runner once the job has a final outcome (server/imaging/spool.py)."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from server.artifacts import store as artifacts
from server.artifacts.models import Artifact
from server.core import worker_context
from server.core.jobs import Progress, job_kind
from server.imaging import repository as repo
from server.imaging.archive import ArchiveLimits
from server.imaging.deid import derive_site_secret
from server.imaging.dicom_files import Limits, read_dicom
from server.imaging.ingest import Accepted, IngestSettings, ingest, iter_inputs
from server.imaging.models import ImagingSeries, IngestReport
from server.imaging.pipeline import ModelParams, build_model, libraries
from server.imaging.series import Volume, VolumeLimits, volumes_from_files
from server.imaging.spool import remove_spool
from server.settings import Settings


def dicom_limits(settings: Settings) -> Limits:
    return Limits(
        max_file_bytes=settings.dicom_max_file_bytes,
        max_decoded_bytes=settings.dicom_max_decoded_bytes,
        max_pixels_per_frame=settings.dicom_max_pixels_per_frame,
        max_frames=settings.dicom_max_frames,
        max_nesting_depth=settings.dicom_max_nesting_depth,
    )


def volume_limits(settings: Settings) -> VolumeLimits:
    return VolumeLimits(
        max_gap_factor=settings.volume_max_gap_factor,
        max_gap_mm=settings.volume_max_gap_mm,
        max_voxels=settings.volume_max_voxels,
    )


def archive_limits(settings: Settings) -> ArchiveLimits:
    return ArchiveLimits(
        max_members=settings.upload_max_files,
        max_total_bytes=settings.zip_max_uncompressed_bytes,
        max_member_ratio=settings.zip_max_ratio,
        max_total_ratio=settings.zip_max_ratio,
    )


def _new_instance(item: Accepted, sha256: str, size: int) -> repo.NewInstance:
    ds = item.dataset

    def number(keyword: str) -> int | None:
        try:
            value = ds.get(keyword)
            return int(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            return None

    return repo.NewInstance(
        study_uid=str(ds.StudyInstanceUID),
        series_uid=str(ds.SeriesInstanceUID),
        sop_uid=str(ds.SOPInstanceUID),
        sop_class_uid=str(ds.get("SOPClassUID", "")),
        transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
        blob_sha256=sha256,
        size_bytes=size,
        header=item.header,
        study_description=str(ds.get("StudyDescription", "")),
        series_description=str(ds.get("SeriesDescription", "")),
        modality=str(ds.get("Modality", "")),
        series_number=number("SeriesNumber"),
        instance_number=number("InstanceNumber"),
        frames=number("NumberOfFrames") or 1,
        original_uids=item.original_uids,
    )


@job_kind("imaging.ingest", timeout_s=6 * 3600, cleanup=remove_spool)
def ingest_job(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    settings, db, blobs = worker_context.settings(), worker_context.database(), worker_context.blobs()
    job = worker_context.job()
    case_id, site_id = params["case_id"], params["site_id"]
    spool = Path(params["spool"])
    listed = params.get("files") or [{"name": p.name, "path": p.name} for p in sorted(spool.iterdir())]
    paths = [(f["name"], spool / f["path"]) for f in listed if (spool / f["path"]).is_file()]
    config = IngestSettings(
        site_secret=derive_site_secret(settings.effective_deid_secret, site_id),
        label=params["label"],
        limits=dicom_limits(settings),
        archive_limits=archive_limits(settings),
    )
    series_seen: set[str] = set()

    def accept(item: Accepted) -> bool:
        ref = blobs.put_bytes(item.data, site_id=site_id)
        series_seen.add(str(item.dataset.SeriesInstanceUID))
        with db.session() as session:
            return repo.record_instance(
                session,
                case_id=case_id,
                site_id=site_id,
                item=_new_instance(item, ref.sha256, ref.size),
                source=params["source"],
            )

    total = max(len(paths), 1)
    outcomes = ingest(
        iter_inputs(paths, config.archive_limits),
        config,
        accept,
        lambda i: progress(min(0.7, 0.7 * i / total), f"checking and de-identifying file {i + 1}"),
    )
    lines = [o.as_json() for o in outcomes]
    volumes = []
    for n, series_uid in enumerate(sorted(series_seen)):
        progress(0.7 + 0.3 * n / max(len(series_seen), 1), f"building the volume of series {n + 1}")
        built = build_series_volume(
            settings, case_id, site_id, series_uid, job.get("submitted_by") or "system", job.get("room_id")
        )
        volumes.append(built)
    accepted = sum(o.status == "accepted" for o in outcomes)
    rejected = sum(o.status == "rejected" for o in outcomes)
    report_id = str(job.get("id") or hashlib.sha256(str(spool).encode()).hexdigest()[:32])
    with db.session() as session:
        if session.get(IngestReport, report_id) is None:
            session.add(
                IngestReport(
                    id=report_id,
                    case_id=case_id,
                    job_id=job.get("id"),
                    source=params["source"],
                    created_by=job.get("submitted_by") or "system",
                    accepted=accepted,
                    rejected=rejected,
                    files=lines + [v for v in volumes if v.get("problems")],
                )
            )
            session.commit()
    return {
        "report_id": report_id,
        "accepted": accepted,
        "rejected": rejected,
        "duplicates": sum(o.status == "duplicate" for o in outcomes),
        "volumes": volumes,
    }


def _inputs_digest(shas: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(shas)).encode()).hexdigest()


def build_series_volume(
    settings: Settings, case_id: str, site_id: str, series_uid: str, user: str, room_id: str | None
) -> dict[str, Any]:
    """The series' volume as an NRRD artifact (HU, LPS geometry), unless one from the same instances exists."""
    db, blobs = worker_context.database(), worker_context.blobs()
    with db.session() as session:
        series = session.exec(repo.series_by_uid(case_id, series_uid)).first()
        if series is None:
            return {"series_uid": series_uid, "problems": [{"code": "no_series", "message": "nothing stored"}]}
        rows = repo.instances_of(session, case_id, series_uid=series_uid)
        current = artifacts.latest(session, repo.volume_lineage(series.id))
    digest = _inputs_digest([r.blob_sha256 for r in rows])
    if current is not None and current.provenance.get("inputs", [{}])[0].get("sha256") == digest:
        return {"series_id": series.id, "artifact_id": current.id, "notes": current.meta.get("notes", [])}
    files = [
        read_dicom(
            blobs.path_of(r.blob_sha256), f"instance {r.instance_number or r.sop_uid}", limits=dicom_limits(settings)
        )
        for r in rows
    ]
    built, problems = volumes_from_files(files, limits=volume_limits(settings))
    problem_lines = [
        {
            "name": getattr(p, "name", "") or f"series {series.number}",
            "status": "volume_refused",
            "code": str(p.code),
            "message": p.reason,
        }
        for p in problems
        if type(p).__name__ == "SeriesProblem"
    ]
    if not built:
        return {"series_id": series.id, "problems": problem_lines}
    volume = max(built, key=lambda v: v.slice_count)
    row = _store_volume(volume, series, case_id, site_id, user, room_id, digest, len(rows))
    return {"series_id": series.id, "artifact_id": row.id, "notes": volume.notes, "problems": problem_lines}


def _store_volume(
    volume: Volume,
    series: ImagingSeries,
    case_id: str,
    site_id: str,
    user: str,
    room_id: str | None,
    digest: str,
    instances: int,
) -> Artifact:
    db, blobs = worker_context.database(), worker_context.blobs()
    image = volume.image
    with tempfile.TemporaryDirectory(dir=worker_context.settings().data_dir) as tmp:
        path = Path(tmp) / "volume.nrrd"
        sitk.WriteImage(image, str(path), useCompression=True)
        ref = blobs.put_file(path, site_id=site_id)
    meta = {
        "size": list(image.GetSize()),
        "spacing_mm": list(image.GetSpacing()),
        "origin_lps": list(image.GetOrigin()),
        "direction": list(image.GetDirection()),
        "slice_count": volume.slice_count,
        "tilt_deg": volume.tilt_deg,
        "notes": volume.notes,
        "modality": volume.modality,
        "series_uid": series.series_uid,
    }
    with db.session() as session:
        return artifacts.add_version(
            session,
            case_id=case_id,
            site_id=site_id,
            lineage_id=repo.volume_lineage(series.id),
            kind="volume",
            name=f"{series.description or series.modality or 'series'} volume",
            files={"nrrd": {"sha256": ref.sha256, "size": ref.size}},
            meta=meta,
            created_by=user,
            room_id=room_id,
            provenance={
                "operation": "imaging.volume",
                "inputs": [
                    {"series_uid": series.series_uid, "series_id": series.id, "sha256": digest, "instances": instances}
                ],
                "parameters": asdict(volume_limits(worker_context.settings())),
                "libraries": libraries(),
                "user": user,
                "room_id": room_id,
            },
        )


def read_volume(row: Artifact) -> sitk.Image:
    reader = sitk.ImageFileReader()
    reader.SetImageIO("NrrdImageIO")  # blobs have no file extension to guess from
    reader.SetFileName(str(worker_context.blobs().path_of(row.files["nrrd"]["sha256"])))
    return reader.Execute()


@job_kind("imaging.build_model", timeout_s=3600)
def build_model_job(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    db, blobs = worker_context.database(), worker_context.blobs()
    job = worker_context.job()
    case_id, site_id, lineage = params["case_id"], params["site_id"], params["lineage_id"]
    artifact_id = f"{job['id']}-model" if job.get("id") else None
    with db.session() as session:
        existing = session.get(Artifact, artifact_id) if artifact_id else None
        volume = artifacts.latest(session, repo.volume_lineage(params["series_id"]))
    if existing is None:
        if volume is None:
            raise ValueError("this series has no volume: see its ingest report for why")
        progress(0.02, "reading the volume")
        model_params = ModelParams.from_json(params)
        model = build_model(read_volume(volume), model_params, progress, name=params["name"])
        refs = {fmt: blobs.put_bytes(data, site_id=site_id) for fmt, data in model.files.items()}
        with db.session() as session:
            existing = artifacts.add_version(
                session,
                case_id=case_id,
                site_id=site_id,
                lineage_id=lineage,
                kind="mesh",
                name=params["name"],
                files={fmt: {"sha256": r.sha256, "size": r.size} for fmt, r in refs.items()},
                meta=_mesh_meta(model) | {"segmentation": model.segmentation},
                provenance={
                    "operation": "imaging.build_model",
                    "inputs": [{"artifact_id": volume.id, "sha256": volume.files["nrrd"]["sha256"]}],
                    "parameters": model_params.as_json(),
                    "libraries": libraries(),
                    "user": job.get("submitted_by"),
                    "room_id": job.get("room_id"),
                    "job_id": job.get("id"),
                },
                created_by=str(job.get("submitted_by") or "system"),
                room_id=job.get("room_id"),
                artifact_id=artifact_id,
            )
    return model_result(existing)


def _mesh_meta(model: Any) -> dict[str, Any]:
    report = model.surface.report
    return {
        "faces": report.faces,
        "vertices": report.vertices,
        "volume_mm3": report.volume_mm3,
        "area_mm2": report.area_mm2,
        "bbox_min_lps": list(report.bbox_min_lps),
        "bbox_max_lps": list(report.bbox_max_lps),
        "watertight": report.watertight,
        "components": report.components,
    }


def model_result(row: Artifact) -> dict[str, Any]:
    """A job's result for a new mesh version, with the room op that shows it to everyone."""
    return {
        "artifact_id": row.id,
        "lineage_id": row.lineage_id,
        "version": row.version,
        "meta": row.meta,
        "room_ops": [
            {
                "kind": "scene.model.add",
                "payload": {
                    "id": row.lineage_id,
                    "name": row.name,
                    "version": row.version,
                    "artifact_id": row.id,
                    "url": f"/api/artifacts/{row.id}/file.glb",
                },
            }
        ],
    }


@job_kind("imaging.labelmap_model", timeout_s=3600, cleanup=remove_spool)
def labelmap_model_job(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """A label map made elsewhere (3D Slicer's NRRD or NIfTI) instead of thresholding: its surface."""
    from server.imaging.pipeline import model_from_mask
    from server.imaging.segment import load_label_map

    db, blobs = worker_context.database(), worker_context.blobs()
    job = worker_context.job()
    artifact_id = f"{job['id']}-model" if job.get("id") else None
    with db.session() as session:
        existing = session.get(Artifact, artifact_id) if artifact_id else None
    if existing is None:
        path = Path(params["path"])
        progress(0.05, "reading the label map")
        mask = load_label_map(path.read_bytes(), params.get("label"))  # sniffed: the spool file has no suffix
        model_params = ModelParams.from_json(params)
        model = model_from_mask(mask, model_params, progress, name=params["name"])
        source = blobs.put_file(path, site_id=params["site_id"])
        refs = {fmt: blobs.put_bytes(data, site_id=params["site_id"]) for fmt, data in model.files.items()}
        with db.session() as session:
            existing = artifacts.add_version(
                session,
                case_id=params["case_id"],
                site_id=params["site_id"],
                lineage_id=params["lineage_id"],
                kind="mesh",
                name=params["name"],
                files={f: {"sha256": r.sha256, "size": r.size} for f, r in refs.items()},
                meta=_mesh_meta(model) | {"label_map": asdict(mask.report)},
                provenance={
                    "operation": "imaging.labelmap_model",
                    "inputs": [{"filename": params["filename"], "sha256": source.sha256, "label": params.get("label")}],
                    "parameters": model_params.as_json(),
                    "libraries": libraries(),
                    "user": job.get("submitted_by"),
                    "room_id": job.get("room_id"),
                    "job_id": job.get("id"),
                },
                created_by=str(job.get("submitted_by") or "system"),
                room_id=job.get("room_id"),
                artifact_id=artifact_id,
            )
    return model_result(existing)
