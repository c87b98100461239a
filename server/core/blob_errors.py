"""The blob store's errors and their messages (server/core/blobs.py raises them)."""

from __future__ import annotations

import re

from server.core.errors import Invalid, NotFound, TooLarge, TrinityError

MiB = 1024 * 1024
SITE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class BlobTooLarge(TooLarge):
    """The upload went past the caller's `max_bytes`; it was stopped and nothing was kept."""

    code = "blob_too_large"


class QuotaExceeded(TrinityError):
    """Storing the blob would take the site past its storage quota; nothing was kept."""

    status = 507
    code = "quota_exceeded"


class BlobNotFound(NotFound):
    code = "blob_not_found"


def check_site_id(site_id: str) -> None:
    if not SITE_ID_RE.match(site_id):
        raise Invalid(f"site id {site_id!r} is not a valid storage name", site_id=site_id)


def not_found(sha256: str) -> BlobNotFound:
    return BlobNotFound(f"no blob {sha256[:80]!r}", sha256=sha256[:80])


def quota_error(site_id: str, quota_bytes: int, used_bytes: int) -> QuotaExceeded:
    left = max(quota_bytes - used_bytes, 0)
    return QuotaExceeded(
        f"site {site_id!r} would exceed its storage quota of {quota_bytes} bytes ({human(quota_bytes)}); "
        f"{left} bytes left",
        site_id=site_id,
        quota_bytes=quota_bytes,
        used_bytes=used_bytes,
    )


def human(size: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", MiB), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"
