"""The printing API's request bodies and role rules, and how a printer body becomes (or changes) a row.

Roles (see api.py): `QUEUE_ROLES` may queue prints; `OPERATOR_ROLES` start, assign, reorder, pause,
resume, cancel and retry them, confirm beds cleared, and manage printers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from server.core.auth import new_id
from server.core.db import now_ms
from server.printing import repository
from server.printing.connections import SecretPolicy, check_connection
from server.printing.fleet import PartClass, Purpose, Technology
from server.printing.models import PrinterRecord
from server.printing.scheduler import Priority

QUEUE_ROLES = frozenset({"surgeon", "engineer", "technician", "admin"})
OPERATOR_ROLES = frozenset({"technician", "admin"})
MESH_FORMATS = ("ply", "stl", "glb", "3mf", "obj")
ENDED = ("done", "failed", "cancelled", "refused", "interrupted")


class PrinterBody(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    technology: Technology | None = None
    build_volume_mm: tuple[float, float, float] | None = None
    material: str | None = None
    nozzle_mm: float | None = None
    layer_height_mm: float | None = None
    tags: list[str] | None = None
    location: str | None = Field(default=None, max_length=200)
    driver: Literal["simulator", "octoprint", "moonraker"] | None = None
    connection: dict[str, Any] | None = None


class PrinterCreate(PrinterBody):
    id: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    name: str = Field(min_length=1, max_length=200)
    technology: Technology
    build_volume_mm: tuple[float, float, float]


class PrintRequestBody(BaseModel):
    artifact_id: str
    part_class: PartClass
    purpose: Purpose = Purpose.CLINICAL  # fit_check: a non-sterile polymer copy of a guide or implant
    material: str | None = None
    technology: Technology | None = None
    priority: Priority | Literal["routine", "soon", "urgent", "emergency"] = Priority.ROUTINE
    surgery_at: datetime | None = None
    tags: list[str] = Field(default_factory=list, max_length=20)
    room_id: str | None = None  # where the prepare and slice jobs report (default: the artifact's room)

    def priority_value(self) -> Priority:
        return self.priority if isinstance(self.priority, Priority) else Priority[self.priority.upper()]


class Switch(BaseModel):
    on: bool


class QueueSwitch(BaseModel):
    paused: bool


class Start(BaseModel):
    printer_id: str | None = None


class Order(BaseModel):
    job_ids: list[str] = Field(max_length=1000)


def new_printer(body: PrinterCreate, site_id: str, policy: SecretPolicy) -> PrinterRecord:
    driver = body.driver or "simulator"
    row = PrinterRecord(
        id=body.id or new_id()[:12],
        site_id=site_id,
        name=body.name,
        technology=body.technology.value,
        build_x_mm=body.build_volume_mm[0],
        build_y_mm=body.build_volume_mm[1],
        build_z_mm=body.build_volume_mm[2],
        material=body.material,
        nozzle_mm=body.nozzle_mm,
        layer_height_mm=body.layer_height_mm,
        tags=sorted(set(body.tags or [])),
        location=body.location or "",
        driver=driver,
        connection=check_connection(driver, body.connection or {}, policy),
    )
    repository.spec_of(row)  # InvalidPrinterSpec (422) before anything is stored
    return row


def apply_update(row: PrinterRecord, body: PrinterBody, policy: SecretPolicy) -> list[str]:
    """Change `row` as the body says (only the fields sent); returns their names. A new connection keeps
    the stored key reference unless it brings its own: nobody has to re-enter a secret to move a host."""
    changes = body.model_dump(exclude_unset=True)
    fields = sorted(changes)
    if "build_volume_mm" in changes:
        row.build_x_mm, row.build_y_mm, row.build_z_mm = changes.pop("build_volume_mm")
    if "technology" in changes:
        row.technology = Technology(changes.pop("technology")).value
    if "tags" in changes:
        row.tags = sorted(set(changes.pop("tags") or []))
    driver = changes.pop("driver", None) or row.driver
    connection = changes.pop("connection", None)
    if connection is not None or driver != row.driver:
        merged = dict(connection if connection is not None else row.connection)
        if driver == row.driver and "api_key_ref" in row.connection and "api_key_ref" not in merged:
            merged["api_key_ref"] = row.connection["api_key_ref"]
        row.connection = check_connection(driver, merged, policy)
        row.driver = driver
    for key, value in changes.items():
        setattr(row, key, value)
    repository.spec_of(row)
    row.updated_at_ms = now_ms()
    return fields
