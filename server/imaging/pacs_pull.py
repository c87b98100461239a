"""Pull from the hospital PACS over DICOMweb: query it for a case's patient, then retrieve a study into
the case as a job (retrieved into a spool folder, then the same ingest as an upload)."""

from __future__ import annotations

import shutil
import ssl
import uuid
from pathlib import Path
from typing import Any

from server.core import worker_context
from server.core.errors import Invalid
from server.core.jobs import Progress, job_kind
from server.imaging.pacs_client import Auth, BearerToken, PacsTimeouts, retrieve_study
from server.imaging.spool import remove_spool
from server.settings import Settings


def connection(settings: Settings) -> tuple[str, Auth, PacsTimeouts, ssl.SSLContext | bool]:
    if not settings.pacs_url:
        raise Invalid("no PACS is configured here (set TRINITY_PACS_URL to its DICOMweb root)")
    auth: Auth = None
    if settings.pacs_bearer_token:
        auth = BearerToken(settings.pacs_bearer_token)
    elif settings.pacs_username:
        auth = (settings.pacs_username, settings.pacs_password)
    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=settings.pacs_ca_bundle) if settings.pacs_ca_bundle else True
    )
    timeouts = PacsTimeouts(connect_s=settings.pacs_connect_timeout_s, read_s=settings.pacs_read_timeout_s)
    return settings.pacs_url, auth, timeouts, verify


@job_kind("imaging.pacs_pull", timeout_s=6 * 3600, cleanup=remove_spool)
def pacs_pull_job(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    from server.imaging.tasks import ingest_job

    settings = worker_context.settings()
    url, auth, timeouts, verify = connection(settings)
    job_id = worker_context.job().get("id") or uuid.uuid4().hex
    # Named by the edge, so that the runner removes it whatever the outcome (jobs of older servers: by id).
    spool = Path(params.get("spool") or settings.spool_dir / f"pacs-{job_id}")
    if spool.exists():  # a re-run after a crash: start the retrieve again from nothing
        shutil.rmtree(spool)
    progress(0.0, "retrieving the study from the PACS")
    files = retrieve_study(
        url,
        params["study_uid"],
        spool,
        max_bytes=settings.upload_max_bytes,
        max_files=settings.upload_max_files,
        auth=auth,
        timeouts=timeouts,
        verify=verify,
    )
    progress(0.3, f"retrieved {len(files)} instances; ingesting")
    listed = [{"name": f"instance {i + 1}", "path": p.name} for i, p in enumerate(files)]
    result = ingest_job(
        {**params, "source": "pacs", "spool": str(spool), "files": listed}, lambda f, m: progress(0.3 + 0.7 * f, m)
    )
    return {**result, "retrieved": len(files)}
