"""The record's settings. Read from `Settings` by name (TRINITY_* variables once the fields exist there),
with these defaults until then, so the record works before server/settings.py lists them."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class RecordConfig:
    # E-mail (SMTP). No host: no e-mail is sent.
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_from: str = "trinity@localhost"
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = True  # STARTTLS when the server offers it; off only for a local relay
    smtp_timeout_s: float = 10.0
    # Webhooks: comma-separated URLs, each POSTed every notification, signed with the shared secret.
    webhook_urls: str = ""
    webhook_secret: str = ""
    webhook_timeout_s: float = 10.0
    notify_max_attempts: int = 5
    notify_retry_backoff_s: float = 2.0  # doubled after each failed attempt
    notify_queue_max: int = 10_000
    public_url: str = ""  # base URL for links in e-mails, e.g. https://trinity.example.org
    # Reports and snapshots
    report_max_snapshots: int = 24
    report_max_timeline: int = 400
    report_max_artifacts: int = 100
    snapshot_max_bytes: int = 8 * 1024 * 1024
    snapshot_max_pixels: int = 8192 * 8192
    # Re-authentication: failed password confirmations per user before a pause
    reauth_max_failures: int = 5
    reauth_window_s: int = 15 * 60
    # The coordinating site whose admins set every site's storage quota (empty: each site's admins).
    alliance_site_id: str = ""

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> RecordConfig:
        values = {f.name: getattr(settings, f.name) for f in fields(cls) if hasattr(settings, f.name)}
        return cls(**(values | overrides))

    @property
    def webhook_url_list(self) -> list[str]:
        return [u.strip() for u in self.webhook_urls.split(",") if u.strip()]
