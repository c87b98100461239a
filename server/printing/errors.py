"""Printing failures, one type each, with a stable `code` and the HTTP status the app maps them to.

They derive from `server.core.errors.TrinityError` (plain Python), so the app's one error handler
answers them like every other domain error, and a job reports `code`, `message` and `details`.
"""

from __future__ import annotations

from server.core.errors import TrinityError


class PrintingError(TrinityError):
    status = 422
    code = "printing_error"


class UnknownMaterial(PrintingError):
    code = "unknown_material"


class InvalidPrinterSpec(PrintingError):
    """A printer description that cannot be right (SLA printer loaded with PLA, zero build volume...)."""

    code = "invalid_printer"


class MeshNotPrintable(PrintingError):
    """Not a closed, manifold, outward-facing solid: a slicer would guess at what is inside."""

    code = "mesh_not_printable"


class SlicerMissing(PrintingError):
    """The slicer binary is not installed or not on PATH (Debian package `prusa-slicer`)."""

    status = 503
    code = "slicer_missing"


class SlicingFailed(PrintingError):
    """The slicer ran and refused or crashed; `message` carries the slicer's own words."""

    code = "slicing_failed"


class SlicingTimeout(PrintingError):
    status = 504
    code = "slicing_timeout"


class PrintQuotaExceeded(PrintingError):
    """Queueing the job would take the site past one of its print quotas (server/printing/quotas.py).
    `details`: `quota` (the limit's name), `usage`, `limit`, and what the job would add."""

    status = 429
    code = "print_quota_exceeded"


class ActiveJobsQuotaExceeded(PrintQuotaExceeded):
    code = "print_quota_active_jobs"


class MonthlyVolumeQuotaExceeded(PrintQuotaExceeded):
    code = "print_quota_monthly_volume"


class PrinterInUse(PrintingError):
    """A printer that is printing, or has a job on it or assigned to it, cannot be retired."""

    status = 409
    code = "printer_in_use"
