"""A job's spool folder: where an upload, a received or a retrieved study waits for its job.

It stays while the job may still run again (a retry, a redelivery after a worker died, a re-run after
the server died) and goes once the job has a final outcome (succeeded, failed or cancelled): the job
runners call `remove_spool` then, as the cleanup of the job kinds that read a spool folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

SPOOL_FOLDER_NAME = "spool"  # Settings.spool_dir is data_dir/spool; a job's folder is directly inside


def spool_of(params: dict[str, Any]) -> Path | None:
    """The job's spool folder: params["spool"], or the folder of params["path"] (a label map job queued
    before its params named the folder). None when there is none, or it is not one of the spool's own."""
    named = params.get("spool") or (str(Path(params["path"]).parent) if params.get("path") else "")
    if not isinstance(named, str) or not named:
        return None
    folder = Path(named)
    return folder if folder.parent.name == SPOOL_FOLDER_NAME and folder.name not in ("", ".", "..") else None


def remove_spool(params: dict[str, Any]) -> None:
    folder = spool_of(params)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
