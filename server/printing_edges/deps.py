"""What the printing REST modules share: who operates the printers, the supervisor's nudge, the settings."""

from __future__ import annotations

from fastapi import Request

from server.core.auth import Principal
from server.core.errors import Forbidden, NotFound
from server.printing.config import PrintingConfig
from server.printing.schemas import OPERATOR_ROLES


def require_operator(principal: Principal, site_id: str) -> None:
    """Technicians and admins of the site (other sites get 404: the site's things are not theirs to see)."""
    if principal.site_id != site_id:
        raise NotFound("not found")
    if principal.role not in OPERATOR_ROLES:
        raise Forbidden("only technicians and admins operate the printers and the queue")


def nudge(request: Request) -> None:
    """Tell this instance's supervisor to look now (others find the change within `printing_poll_s`)."""
    supervisor = getattr(request.app.state, "printing", None)
    if supervisor is not None:
        supervisor.nudge()


def config_of(request: Request) -> PrintingConfig:
    return PrintingConfig.from_settings(request.app.state.settings)
