"""The demo site's fleet for `make run`: 20 simulated printers of all five technologies, from desktop
FDM to large-format metal, loaded with the materials the center uses, and a maker room to watch them.

    seed_demo_fleet(session, site_id)                      # idempotent: adds what is missing
    seed_demo_fleet(session, site_id, maker_room_owner=p)  # and a maker room owned by principal p

The simulators run `speed` times faster than real time (60 by default: a 20 s FDM layer takes a third of
a second), so a demo print ends in minutes.
"""

from __future__ import annotations

from typing import Any

from server.core.auth import Principal
from server.printing import repository
from server.printing.models import PrinterRecord
from server.rooms import repository as rooms

MAKER_ROOM_TITLE = "Maker room"

# key, name, technology, build volume (mm), material, nozzle (mm), layer (mm), tags, location
DEMO_PRINTERS: tuple[
    tuple[str, str, str, tuple[float, float, float], str, float | None, float | None, tuple[str, ...], str], ...
] = (
    ("fdm-01", "Prusa MK4 #1", "fdm", (250, 210, 220), "pla", 0.4, 0.2, (), "print room, bench 1"),
    ("fdm-02", "Prusa MK4 #2", "fdm", (250, 210, 220), "pla", 0.4, 0.2, (), "print room, bench 1"),
    ("fdm-03", "Prusa MK4 #3", "fdm", (250, 210, 220), "petg", 0.4, 0.2, (), "print room, bench 2"),
    ("fdm-04", "Raise3D Pro3", "fdm", (300, 300, 300), "pla", 0.6, 0.3, ("large",), "print room, bench 3"),
    ("fdm-05", "Ultimaker S5", "fdm", (330, 240, 300), "pa12", 0.4, 0.15, (), "print room, bench 3"),
    ("fdm-06", "Bambu X1 (TPU)", "fdm", (256, 256, 256), "tpu", 0.4, 0.2, (), "print room, bench 2"),
    ("fdm-07", "Voron 2.4", "fdm", (350, 350, 340), "petg", 0.6, 0.3, ("large",), "print room, bench 4"),
    ("sla-01", "Form 3B+ #1", "sla", (145, 145, 185), "resin_biocompatible", None, 0.05, ("cleanroom",), "clean room"),
    ("sla-02", "Form 3B+ #2", "sla", (145, 145, 185), "resin_biocompatible", None, 0.05, ("cleanroom",), "clean room"),
    ("sla-03", "Form 3B+ #3", "sla", (145, 145, 185), "resin_biocompatible", None, 0.05, (), "print room, resin bay"),
    ("sla-04", "Form 3L", "sla", (335, 200, 300), "resin_standard", None, 0.1, ("large",), "print room, resin bay"),
    ("sla-05", "Asiga MAX", "sla", (119, 67, 75), "resin_standard", None, 0.05, (), "print room, resin bay"),
    ("met-01", "EOS M 290", "metal", (250, 250, 325), "ti6al4v", None, 0.03, ("cleanroom",), "metal hall"),
    ("met-02", "TruPrint 1000", "metal", (100, 100, 100), "ti6al4v", None, 0.03, (), "metal hall"),
    ("met-03", "Concept Mlab", "metal", (90, 90, 80), "ti6al4v", None, 0.025, (), "metal hall"),
    ("met-04", "Renishaw AM250", "metal", (250, 250, 300), "ss316l", None, 0.05, (), "metal hall"),
    ("cer-01", "Lithoz CeraFab S65", "ceramic", (102, 64, 320), "hydroxyapatite", None, 0.025, (), "ceramics lab"),
    ("cer-02", "Admaflex 130", "ceramic", (96, 60, 120), "zirconia", None, 0.025, (), "ceramics lab"),
    ("bio-01", "BIO X #1", "bio", (130, 90, 60), "bioink_gelma", 0.41, 0.3, ("sterile",), "tissue lab"),
    ("bio-02", "BIO X #2", "bio", (130, 90, 60), "bioink_alginate", 0.61, 0.4, ("sterile",), "tissue lab"),
)


def seed_demo_fleet(
    session: Any, site_id: str, *, speed: float = 60.0, maker_room_owner: Principal | None = None
) -> list[str]:
    """Add the demo printers the site lacks (ids `<site>-<key>`); returns the ids of the whole demo fleet."""
    ids = []
    for key, name, technology, volume, material, nozzle, layer, tags, location in DEMO_PRINTERS:
        printer_id = f"{site_id}-{key}"[:64]
        ids.append(printer_id)
        if session.get(PrinterRecord, printer_id) is not None:
            continue
        repository.add_printer(
            session,
            PrinterRecord(
                id=printer_id,
                site_id=site_id,
                name=name,
                technology=technology,
                build_x_mm=volume[0],
                build_y_mm=volume[1],
                build_z_mm=volume[2],
                material=material,
                nozzle_mm=nozzle,
                layer_height_mm=layer,
                tags=list(tags),
                location=location,
                driver="simulator",
                connection={"speed": speed},
            ),
        )
    if maker_room_owner is not None and not repository.maker_rooms(session, site_id):
        rooms.create_room(session, maker_room_owner, kind="maker", title=MAKER_ROOM_TITLE, case_id=None)
    return ids
