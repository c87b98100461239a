"""All of Trinity's settings in one place, read from TRINITY_* environment variables.

Built once by `create_app` or the CLI, never at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "dev-only-secret-change-me-0123456789abcdef"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRINITY_", env_file=None, extra="ignore")

    environment: str = Field("development", description="development | production")
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("var")
    database_url: str = ""  # empty: SQLite file under data_dir
    redis_url: str = ""  # empty: in-process event bus
    db_pool_size: int = 10
    db_max_overflow: int = 20
    # NORMAL (WAL): an acknowledged op survives a crash of the server process, and commits need no fsync,
    # so room ops commit on the event loop (rooms/store_sqlite.py); FULL also survives a power cut.
    sqlite_synchronous: str = "NORMAL"
    auto_migrate: bool = True  # apply migrations at start-up (embedded installs)
    demo: bool = False  # seed a demo site, users and room at start-up

    # Auth
    secret_key: str = DEV_SECRET
    access_token_ttl_s: int = 15 * 60
    refresh_token_ttl_s: int = 14 * 24 * 3600
    invite_ttl_max_s: int = 14 * 24 * 3600

    # HTTP limits
    max_request_bytes: int = 1 * 1024 * 1024

    # Room WebSocket limits
    ws_max_message_bytes: int = 64 * 1024
    ws_rate_per_s: float = 60.0  # sustained messages per connection
    ws_rate_burst: int = 120
    ws_send_queue_max: int = 10_000  # ordered frames waiting for one client before it is dropped
    ws_send_stall_s: float = 10.0  # a client that takes no frame for this long while some wait is dropped
    # Frames queued for a client that said `"batch": true` in hello go out together, up to this many
    # bytes per WebSocket message (docs/protocol.md §1); 0 sends one frame per message to everyone.
    ws_batch_max_bytes: int = 64 * 1024
    ws_per_message_deflate: bool = False  # compression costs CPU per frame per client; frames are small
    ws_auth_timeout_s: float = 10.0
    ws_idle_after_s: float = 60.0
    room_max_online: int = 50
    room_resume_max_ops: int = 5000  # beyond this a resuming client gets a fresh snapshot
    pointer_max_hz: float = 20.0
    camera_max_hz: float = 30.0
    presence_heartbeat_s: float = 2.0  # how often instances share who is online (Redis bus)
    presence_ttl_s: float = 6.0  # a dead instance's users disappear within ttl + heartbeat (< 10 s)
    # Several instances: one leads each room (decides its ops), renewing a lease this long every third
    # of it; the others forward ops to it. A dead leader's rooms are taken over within about this long.
    room_lease_s: float = 3.0
    presenter_grace_s: float = 15.0  # a disconnected presenter keeps the role this long
    annotation_max_bytes: int = 16 * 1024
    chat_max_chars: int = 4000

    # Garbage collection (core/gc_policy.py): short pauses instead of rare long ones
    gc_gen0_threshold: int = 2000
    # Survivors of a collection of this generation or older are not rescanned. 0: of any; at 1, the
    # generation-1 collections rescanned ten young generations' survivors and paused 5-15 ms each.
    gc_freeze_after: int | None = 0
    gc_full_interval_s: float = 600.0  # a full collection (frozen objects too) this often

    # Jobs
    job_runner: Literal["local", "celery"] = "local"  # celery: a Celery worker on TRINITY_REDIS_URL runs them
    job_workers: int = 2  # jobs running at once (embedded runner)
    job_queue: str = "trinity.jobs"  # the Celery queue the app sends to and the worker consumes
    # A job whose whole worker died is handed to another worker after this long (Redis visibility timeout).
    job_visibility_timeout_s: float = 300.0
    # A run holds a lease renewed every lease/3 s: at most one run of a job at a time, and a redelivered
    # job whose worker died waits at most this long for the dead run's lease.
    job_lease_s: float = 15.0
    job_max_retries: int = 3  # retryable failures (RetryableJobError, database or Redis unreachable)
    job_retry_backoff_s: float = 2.0  # first retry after this, doubling each time

    job_unsent_sweep_s: float = 30.0  # a job stored but never sent to Celery (instance died) is sent after this
    job_effects_poll_s: float = 1.0  # how often finished jobs' room effects (new models) are looked for

    # Imaging: uploads, validation limits, de-identification, DICOM networking
    upload_max_bytes: int = 2 * 1024**3  # one upload (zip or files) in total
    upload_max_files: int = 5000
    zip_max_ratio: float = 200.0  # uncompressed/compressed, per member and in total (zip bombs)
    zip_max_uncompressed_bytes: int = 4 * 1024**3
    dicom_max_file_bytes: int = 2 * 1024**3
    dicom_max_decoded_bytes: int = 2 * 1024**3  # pixels of one file once decoded
    dicom_max_pixels_per_frame: int = 4096 * 4096  # a 65535x65535 header is refused before decoding
    dicom_max_frames: int = 5000
    dicom_max_nesting_depth: int = 16
    volume_max_gap_factor: float = 2.5  # a gap above this many slice spacings is refused, below it resampled
    volume_max_gap_mm: float = 5.0
    volume_max_voxels: int = 1024**3
    deid_secret: str = ""  # per-install key for consistent UID remapping; empty: derived from secret_key
    slice_cache_bytes: int = 64 * 1024**2
    model_max_faces: int = 2_000_000
    model_default_faces: int = 300_000
    dicom_scp_enabled: bool = False
    dicom_scp_host: str = "127.0.0.1"
    dicom_scp_port: int = 11112
    dicom_scp_ae_title: str = "TRINITY"
    # "PACSAE=site_id,CTAE=site_id": the calling AE titles allowed to send, and the site whose cases
    # their studies go to (matched by the owning site's patient ID, else a new case). Required to enable.
    dicom_scp_allowed_aes: str = ""
    dicom_scp_max_associations: int = 8
    dicom_scp_max_files_per_association: int = 20_000
    dicom_scp_max_bytes_per_association: int = 8 * 1024**3
    # The hospital PACS that "pull from PACS" queries and retrieves from, over DICOMweb.
    pacs_url: str = ""
    pacs_username: str = ""
    pacs_password: str = ""
    pacs_bearer_token: str = ""
    pacs_ca_bundle: str = ""  # a CA file for a PACS with a private certificate
    pacs_connect_timeout_s: float = 10.0
    pacs_read_timeout_s: float = 60.0

    # Design: mesh uploads and operations
    mesh_max_bytes: int = 512 * 1024**2
    mesh_max_faces: int = 5_000_000

    # Printing (server/printing/config.py)
    printing_supervisor: bool = True  # run the print supervisor in this instance (it takes the lease first)
    printing_poll_s: float = 1.0
    printing_progress_write_s: float = 2.0
    printing_lease_s: float = 15.0
    printing_connect_retry_max_s: float = 30.0
    printing_secret_env_prefix: str = "TRINITY_PRINTER_"  # printer API keys: env:NAME references start so
    printing_secrets_dir: str = "/run/secrets"  # or file: references under this folder
    printing_slice_timeout_s: float = 900.0
    printing_slicer_binary: str = "prusa-slicer"
    # Per-site print quotas (an admin may set a site's own: PATCH /api/sites/{site}/print-quota)
    printing_quota_active_jobs: int = Field(200, ge=0)  # open print jobs (queued to printing) at once
    printing_quota_monthly_volume_cm3: float = Field(50_000.0, ge=0)  # part volume queued per calendar month
    printing_quota_timezone: str = "UTC"  # where the calendar months of the volume quota begin (IANA name)

    # Video (server/rooms/video/config.py)
    video_enabled: bool = True
    video_ice_servers: str = ""  # JSON list of RTCIceServer dicts
    video_turn_urls: str = ""
    video_turn_secret: str = ""
    video_turn_ttl_s: int = 3600
    video_host_addresses: str = ""  # interfaces the server gathers candidates on; 127.0.0.1 for demos/tests
    video_max_publishers: int = 5
    video_max_forwarded_streams: int = 20  # measured by bench/video on this machine class
    video_recording_dir: str = ""  # empty: data_dir/recordings
    video_answer_timeout_s: float = 20.0

    # Consultation record: notifications, reports, snapshots, re-authentication (server/record/config.py)
    smtp_host: str = ""  # empty: no e-mail is sent
    smtp_port: int = 587
    smtp_from: str = "trinity@localhost"
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = True
    smtp_timeout_s: float = 10.0
    webhook_urls: str = ""  # comma-separated; each notification is POSTed, signed with webhook_secret
    webhook_secret: str = ""
    webhook_timeout_s: float = 10.0
    notify_max_attempts: int = 5
    notify_retry_backoff_s: float = 2.0
    notify_queue_max: int = 10_000
    public_url: str = ""  # base URL for links in e-mails
    report_max_snapshots: int = 24
    report_max_timeline: int = 400
    report_max_artifacts: int = 100
    snapshot_max_bytes: int = 8 * 1024 * 1024
    snapshot_max_pixels: int = 8192 * 8192
    reauth_max_failures: int = 5
    reauth_window_s: int = 15 * 60
    alliance_site_id: str = ""  # the coordinating site whose admins set every site's quota

    log_level: str = "INFO"
    log_json: bool = True

    @model_validator(mode="after")
    def _refuse_dev_secret_in_production(self) -> Settings:
        if self.environment == "production" and self.secret_key == DEV_SECRET:
            raise ValueError("TRINITY_SECRET_KEY must be set in production")
        return self

    @field_validator("printing_quota_timezone")
    @classmethod
    def _known_timezone(cls, name: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r} (an IANA name such as Europe/Berlin)") from None
        return name

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'trinity.db').as_posix()}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def spool_dir(self) -> Path:
        """Uploads and received studies waiting for their ingest job (same volume as the blobs)."""
        return self.data_dir / "spool"

    @property
    def effective_deid_secret(self) -> bytes:
        import hashlib

        return (self.deid_secret or hashlib.sha256(b"trinity-deid:" + self.secret_key.encode()).hexdigest()).encode()

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")
