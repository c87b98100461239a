"""How Trinity reaches a printer: the connection settings stored for it, secret references resolved
only when connecting, and the driver built from them.

A printer's `connection` (JSON in the printers table) holds no secret, only where to find one:

    octoprint   {"base_url": "http://octopi-7.lan", "api_key_ref": "env:TRINITY_PRINTER_OCTOPI7_KEY",
                 "port": "VIRTUAL", "webcam_urls": [...], "reconnect_max_s": 15}
    moonraker   {"base_url": "http://voron.lan:7125", "api_key_ref": "file:/run/secrets/voron"}   (ref optional)
    simulator   {"speed": 60, "layer_s": 20, "failure": {"fail_at_layer": 12, ...}}

References are confined (`SecretPolicy`): an environment variable must start with the allowed prefix and
a file must lie in the allowed folder. Otherwise anyone allowed to edit a printer could point its host at
a machine of theirs and have Trinity send it TRINITY_SECRET_KEY or any file the server can read.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from server.core.errors import Invalid
from server.printing.drivers.base import PrinterDriver, PrinterEvent
from server.printing.drivers.host_link import HostTimeouts
from server.printing.fleet import PrinterSpec

DRIVERS = ("simulator", "octoprint", "moonraker")
HOST_KEYS = frozenset({"base_url", "api_key_ref", "port", "webcam_urls", "reconnect_max_s"})
SIMULATOR_KEYS = frozenset({"speed", "layer_s", "failure"})
FAILURE_KEYS = frozenset(
    {"fail_at_layer", "fail_message", "error_at_layer", "error_message", "unreachable_at_layer", "unreachable_for_s"}
)


class SecretUnavailable(Exception):
    """A reference that does not resolve (variable unset, file missing): the printer stays offline."""


@dataclass(frozen=True)
class SecretPolicy:
    env_prefix: str = "TRINITY_PRINTER_"
    secrets_dir: Path = Path("/run/secrets")


def check_connection(driver: str, connection: Mapping[str, Any], policy: SecretPolicy) -> dict[str, Any]:
    """The connection as it will be stored, or Invalid naming the field. Literal keys are refused."""
    if driver not in DRIVERS:
        raise Invalid(f"driver must be one of {', '.join(DRIVERS)}")
    if "api_key" in connection:
        raise Invalid("connection.api_key: store a reference (api_key_ref: env:NAME or file:/path), not the key")
    allowed = SIMULATOR_KEYS if driver == "simulator" else HOST_KEYS
    if unknown := sorted(set(connection) - allowed):
        raise Invalid(f"connection: unknown field(s) {', '.join(unknown)} for a {driver} printer")
    if driver == "simulator":
        for key in ("speed", "layer_s"):
            if key in connection and not (isinstance(connection[key], int | float) and connection[key] > 0):
                raise Invalid(f"connection.{key} must be a positive number")
        failure = connection.get("failure") or {}
        if not isinstance(failure, dict) or set(failure) - FAILURE_KEYS:
            raise Invalid(f"connection.failure may hold {', '.join(sorted(FAILURE_KEYS))}")
        return dict(connection)
    url = urlparse(str(connection.get("base_url") or ""))
    if url.scheme not in ("http", "https") or not url.netloc:
        raise Invalid("connection.base_url must be an http(s) URL of the printer host")
    ref = connection.get("api_key_ref")
    if ref is None and driver == "octoprint":
        raise Invalid("connection.api_key_ref is required for OctoPrint (a per-user application key)")
    if ref is not None:
        check_reference(str(ref), policy)
    reconnect = connection.get("reconnect_max_s", 15.0)
    if not isinstance(reconnect, int | float) or not 0 < reconnect <= 600:
        raise Invalid("connection.reconnect_max_s must be a number of seconds, at most 600")
    webcams = connection.get("webcam_urls", [])
    if not isinstance(webcams, list) or not all(isinstance(u, str) for u in webcams):
        raise Invalid("connection.webcam_urls must be a list of URLs")
    return dict(connection)


def check_reference(ref: str, policy: SecretPolicy) -> None:
    scheme, _, target = ref.partition(":")
    if scheme == "env":
        if not target.startswith(policy.env_prefix) or not target.replace("_", "").isalnum():
            raise Invalid(f"api_key_ref: an environment variable named {policy.env_prefix}…")
    elif scheme == "file":
        path = Path(target)
        root = policy.secrets_dir.resolve()
        if not path.is_absolute() or not path.resolve().is_relative_to(root):
            raise Invalid(f"api_key_ref: a file under {root}")
    else:
        raise Invalid("api_key_ref must be env:NAME or file:/path")


def resolve_secret(ref: str, policy: SecretPolicy) -> str:
    """The secret a reference points to, read now (so a rotated key is picked up on reconnect)."""
    check_reference(ref, policy)
    scheme, _, target = ref.partition(":")
    if scheme == "env":
        value = os.environ.get(target)
        if not value:
            raise SecretUnavailable(f"environment variable {target} is not set")
        return value
    try:
        return Path(target).read_text().strip()
    except OSError as exc:
        raise SecretUnavailable(f"cannot read {target}: {exc.strerror}") from exc


def public_connection(driver: str, connection: Mapping[str, Any]) -> dict[str, Any]:
    """What the API shows: where the host is, whether a key is configured; never the reference itself."""
    shown = {k: v for k, v in connection.items() if k != "api_key_ref"}
    if driver != "simulator":
        shown["has_api_key"] = bool(connection.get("api_key_ref"))
    return shown


def make_driver(
    spec: PrinterSpec,
    driver: str,
    connection: Mapping[str, Any],
    *,
    policy: SecretPolicy,
    sim_dir: Path,
    timeouts: HostTimeouts | None = None,
) -> PrinterDriver:
    """A new, unconnected driver for one printer. Raises SecretUnavailable for a missing key."""
    if driver == "simulator":
        from server.printing.drivers.simulator import SimFailure, SimSettings, SimulatedPrinter

        failure = SimFailure(**(connection.get("failure") or {}))
        settings = SimSettings(
            layer_s=connection.get("layer_s"), speed=float(connection.get("speed", 1.0)), failure=failure
        )
        sim_dir.mkdir(parents=True, exist_ok=True)
        return SimulatedHost(SimulatedPrinter(spec, settings, files_dir=sim_dir))
    if "reconnect_max_s" in connection:  # how long a lost host may wait for the next try (doubling up to it)
        timeouts = replace(timeouts or HostTimeouts(), backoff_max_s=float(connection["reconnect_max_s"]))
    key_ref = connection.get("api_key_ref")
    api_key = resolve_secret(str(key_ref), policy) if key_ref else None
    webcams = list(connection.get("webcam_urls") or [])
    if driver == "octoprint":
        from server.printing.drivers.octoprint import OctoPrintDriver

        return OctoPrintDriver(
            str(connection["base_url"]),
            api_key or "",
            port=connection.get("port"),
            timeouts=timeouts,
            webcam_urls=webcams,
        )
    from server.printing.drivers.moonraker import MoonrakerDriver

    return MoonrakerDriver(str(connection["base_url"]), api_key, timeouts=timeouts, webcam_urls=webcams)


class SimulatedHost:
    """A simulated printer is its own host: it has no link to lose but the host's, so its `disconnected`
    and `connected` events are the host's (source "host", which the supervisor treats as host down/up).
    Everything else, the simulation controls too (go_unreachable, inject_error, snapshot_png), is the
    simulator's own."""

    def __init__(self, printer: Any) -> None:
        self.printer = printer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.printer, name)

    def events(self) -> AsyncIterator[PrinterEvent]:
        return _as_host(self.printer.events())


async def _as_host(events: AsyncIterator[PrinterEvent]) -> AsyncIterator[PrinterEvent]:
    async for event in events:
        if event.kind in ("disconnected", "connected") and "source" not in event.detail:
            event = replace(event, detail={**event.detail, "source": "host"})
        yield event
