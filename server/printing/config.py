"""The printing settings, with their defaults. Read from the app's Settings by name (TRINITY_PRINTING_*
once the lead adds them to server/settings.py; until then these defaults hold)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from server.printing.connections import SecretPolicy


@dataclass(frozen=True)
class PrintingConfig:
    printing_supervisor: bool = True  # run the supervisor in this instance (it takes the lease first)
    printing_poll_s: float = 1.0  # how often the supervisor looks for work done elsewhere (workers, instances)
    printing_progress_write_s: float = 2.0  # progress is published at once, stored at most this often
    printing_lease_s: float = 15.0  # the supervisor lease (Redis) or its check interval (PostgreSQL)
    printing_connect_retry_max_s: float = 30.0  # longest wait between attempts to reach a printer host
    printing_secret_env_prefix: str = "TRINITY_PRINTER_"  # env: references must start with this
    printing_secrets_dir: str = "/run/secrets"  # file: references must lie under this folder
    printing_slice_timeout_s: float = 900.0  # one PrusaSlicer run (read by the slice job)
    printing_slicer_binary: str = "prusa-slicer"
    printing_quota_active_jobs: int = 200  # per site, unless the site has its own (quota_store)
    printing_quota_monthly_volume_cm3: float = 50_000.0
    printing_quota_timezone: str = "UTC"

    @classmethod
    def from_settings(cls, settings: Any) -> PrintingConfig:
        values: dict[str, Any] = {f.name: getattr(settings, f.name, f.default) for f in fields(cls)}
        return cls(**values)

    @property
    def secret_policy(self) -> SecretPolicy:
        return SecretPolicy(env_prefix=self.printing_secret_env_prefix, secrets_dir=Path(self.printing_secrets_dir))
