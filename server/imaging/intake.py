"""Studies pushed to Trinity's DICOM SCP become ingest jobs.

The SCP (pynetdicom, its own threads) spools each association's files and calls back on release; the
files are grouped by patient and study (one association may carry several studies), filed under the
sending site's case for that patient (or a new case), moved into a spool folder of their own and handed
to the same `imaging.ingest` job as an upload. Folders left in the SCP spool by a crash are picked up
at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import pydicom

from server.cases.repository import case_for_patient
from server.core.auth import new_id
from server.core.jobs import JobSpec
from server.imaging.scp import ScpConfig, StoreSCP
from server.rooms.repository import latest_open_room
from server.settings import Settings

log = logging.getLogger("trinity.imaging")
SCP_USER = "system:dicom-scp"


def parse_ae_map(value: str) -> dict[str, str]:
    """ "PACS=site-a,CT1=site-b" -> {"PACS": "site-a", "CT1": "site-b"}."""
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        ae, _, site = item.partition("=")
        if not ae.strip() or not site.strip():
            raise ValueError(f"TRINITY_DICOM_SCP_ALLOWED_AES: expected AE=site_id, got {item!r}")
        out[ae.strip()] = site.strip()
    return out


def _patient_and_study(path: Path) -> tuple[str, str, str, str]:
    try:
        ds = pydicom.dcmread(
            path,
            stop_before_pixels=True,
            specific_tags=["PatientID", "PatientName", "PatientBirthDate", "StudyInstanceUID"],
        )
        return (
            str(ds.get("PatientID", "")),
            str(ds.get("PatientName", "")),
            str(ds.get("PatientBirthDate", "")),
            str(ds.get("StudyInstanceUID", "")),
        )
    except Exception:  # unreadable: the ingest report will say why, filed with the others
        return ("", "", "", "")


class ScpIntake:
    def __init__(self, *, settings: Settings, db: Any, jobs: Any) -> None:
        self.settings = settings
        self.db = db
        self.jobs = jobs
        self.sites = parse_ae_map(settings.dicom_scp_allowed_aes)
        self.spool = settings.spool_dir / "scp"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scp: StoreSCP | None = None

    async def start(self) -> None:
        if not self.sites:
            raise ValueError("TRINITY_DICOM_SCP_ALLOWED_AES must name the AE titles allowed to send (AE=site_id)")
        self._loop = asyncio.get_running_loop()
        config = ScpConfig(
            ae_title=self.settings.dicom_scp_ae_title,
            port=self.settings.dicom_scp_port,
            host=self.settings.dicom_scp_host,
            spool_dir=self.spool,
            allowed_calling_aets=frozenset(self.sites),
            max_associations=self.settings.dicom_scp_max_associations,
            max_files_per_association=self.settings.dicom_scp_max_files_per_association,
            max_bytes_per_association=self.settings.dicom_scp_max_bytes_per_association,
        )
        self._scp = StoreSCP(config, self._received)
        await asyncio.to_thread(self._scp.start)
        await self._rescan()

    @property
    def port(self) -> int:
        assert self._scp is not None
        return int(self._scp.port)

    async def close(self) -> None:
        if self._scp is not None:
            await asyncio.to_thread(self._scp.stop)

    def _received(self, files: list[Path], calling_ae: str) -> None:
        """In the SCP's thread: hand over to the event loop and wait, so a failure keeps the files."""
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self.file_studies(files, calling_ae), self._loop).result(timeout=120)

    async def _rescan(self) -> None:
        """Association folders a crash left behind (files fsynced and acknowledged, never handed over)."""
        if not self.spool.exists():
            return
        for folder in sorted(p for p in self.spool.iterdir() if p.is_dir()):
            files = sorted(folder.rglob("*.dcm"))
            ae = folder.name.split("_", 1)[0] if "_" in folder.name else ""
            if files and ae in self.sites:
                await self.file_studies(files, ae)
            with contextlib.suppress(OSError):
                shutil.rmtree(folder)

    async def file_studies(self, files: list[Path], calling_ae: str) -> list[str]:
        site_id = self.sites[calling_ae]
        groups: dict[tuple[str, str, str, str], list[Path]] = defaultdict(list)
        for path in files:
            groups[await asyncio.to_thread(_patient_and_study, path)].append(path)
        job_ids = []
        for (patient_id, name, birth, _study), paths in groups.items():
            case, room_id = await self.db.run_write(self._case, site_id, patient_id, name, birth)
            if case is None:
                log.error("no admin at site %s to own a new case; files kept in %s", site_id, paths[0].parent)
                continue
            folder = self.settings.spool_dir / new_id()
            folder.mkdir(parents=True)
            for index, path in enumerate(paths):
                shutil.move(str(path), folder / f"{index:06d}.dcm")
            params = {
                "case_id": case.id,
                "site_id": site_id,
                "label": case.label,
                "source": "scp",
                "spool": str(folder),
                "files": [{"name": p.name, "path": f"{i:06d}.dcm"} for i, p in enumerate(paths)],
            }
            job = await self.jobs.submit(JobSpec("imaging.ingest", params, SCP_USER, room_id, f"scp:{folder.name}"))
            job_ids.append(job.id)
        return job_ids

    def _case(self, site_id: str, patient_id: str, name: str, birth: str) -> tuple[Any, str | None]:
        with self.db.session() as db:
            case = case_for_patient(
                db, site_id=site_id, patient_id=patient_id, patient_name=name, birth_date=birth, source="scp"
            )
            if case is None:
                return None, None
            room = latest_open_room(db, case.id)
            db.expunge(case)
            return case, room.id if room else None
