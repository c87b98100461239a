"""Notifications: signed webhooks and e-mail over SMTP, sent in the background with retries.

`Notifier.submit` only queues (from the event loop or any thread), so a request never waits for, or
fails because of, a mail server or a webhook receiver. Each delivery (one per webhook URL, one e-mail
per notification) is retried with exponential backoff; a final failure is logged, nothing else. The
queue lives in memory: notifications queued when the process stops are lost (logged at close).

Webhook requests carry `X-Trinity-Timestamp` (unix seconds) and `X-Trinity-Signature: sha256=<hex>`,
the HMAC-SHA256 with the shared secret over `<timestamp>.<body>`; receivers check it with
`verify_signature` (or its few lines in any language) and refuse old timestamps against replays.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import smtplib
import ssl
import time
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import httpx
import orjson

from server.record.config import RecordConfig

log = logging.getLogger("trinity.notify")
SIGNATURE_HEADER = "X-Trinity-Signature"
TIMESTAMP_HEADER = "X-Trinity-Timestamp"
EVENT_HEADER = "X-Trinity-Event"
DELIVERY_HEADER = "X-Trinity-Delivery"
RETRYABLE_STATUS = frozenset({408, 425, 429})


@dataclass(frozen=True)
class Notification:
    event: str  # plan.pending | plan.approved | plan.rejected | print.finished | print.failed
    payload: dict[str, Any]  # the webhook body: de-identified (case label, never patient identity)
    subject: str
    text: str
    recipients: tuple[str, ...] = ()  # e-mail addresses
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class Delivery:
    notification: Notification
    channel: str  # "email" or a webhook URL
    attempt: int = 0


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str, timestamp: str, signature: str, body: bytes, *, now_s: float | None = None, tolerance_s: float = 300
) -> bool:
    """True when `signature` is ours over this body and timestamp, and the timestamp is recent."""
    if not timestamp.isdigit():
        return False
    now = time.time() if now_s is None else now_s
    if abs(now - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


def send_email(config: RecordConfig, recipients: tuple[str, ...], subject: str, text: str) -> None:
    """Blocking SMTP send (runs in a worker thread). Credentials only over TLS."""
    message = EmailMessage()
    message["From"] = config.smtp_from
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message.set_content(text)
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if config.smtp_port == 465:
        smtp = smtplib.SMTP_SSL(config.smtp_host, config.smtp_port, timeout=config.smtp_timeout_s, context=context)
    else:
        smtp = smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=config.smtp_timeout_s)
    with smtp:
        smtp.ehlo()
        secure = isinstance(smtp, smtplib.SMTP_SSL)
        if not secure and config.smtp_starttls and smtp.has_extn("starttls"):
            smtp.starttls(context=context)
            smtp.ehlo()
            secure = True
        if config.smtp_user:
            if not secure:
                raise RuntimeError("SMTP server offers no TLS; refusing to send the password in clear text")
            smtp.login(config.smtp_user, config.smtp_password)
        smtp.send_message(message)


class Notifier:
    def __init__(self, config: RecordConfig, *, http: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self._http = http
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue(maxsize=config.notify_queue_max)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._in_flight = 0  # queued, being sent or waiting for a retry
        self._idle = asyncio.Event()
        self._idle.set()
        self._retry_handles: dict[int, asyncio.TimerHandle] = {}  # id(delivery) -> its pending retry
        self._tasks: set[asyncio.Task[None]] = set()  # strong references: the loop keeps only weak ones
        self.sent: list[tuple[str, str]] = []  # (notification id, channel): what went out, for tests and /metrics
        self.failed: list[tuple[str, str, str]] = []  # (notification id, channel, last error)

    @property
    def enabled(self) -> bool:
        return bool(self.config.smtp_host or self.config.webhook_url_list)

    async def start(self) -> None:
        if self.config.webhook_url_list and not self.config.webhook_secret:
            log.error("webhook URLs are set but no webhook secret: webhooks are not sent (unsigned is unverifiable)")
        self._loop = asyncio.get_running_loop()
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.config.webhook_timeout_s, follow_redirects=False)
        self._task = self._loop.create_task(self._run())

    async def close(self) -> None:
        for handle in self._retry_handles.values():
            handle.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._in_flight:
            log.warning("notifications not sent at shutdown", extra={"pending": self._in_flight})
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._http is not None:
            await self._http.aclose()

    def submit(self, notification: Notification) -> None:
        """Queue every delivery of `notification`; safe from the event loop and from any other thread."""
        loop = self._loop
        if loop is None:
            log.warning("notifier not started; dropped", extra={"event": notification.event})
            return
        urls = self.config.webhook_url_list if self.config.webhook_secret else []
        deliveries = [Delivery(notification, url) for url in urls]
        if self.config.smtp_host and notification.recipients:
            deliveries.append(Delivery(notification, "email"))
        for delivery in deliveries:
            if _on_loop_thread(loop):
                self._enqueue(delivery)
            else:
                loop.call_soon_threadsafe(self._enqueue, delivery)

    async def idle(self) -> None:
        """Wait until nothing is queued, in flight or waiting for a retry."""
        await self._idle.wait()

    def _enqueue(self, delivery: Delivery) -> None:
        try:
            self._queue.put_nowait(delivery)
        except asyncio.QueueFull:
            log.error("notification queue full; dropped", extra={"event": delivery.notification.event})
            return
        self._in_flight += 1
        self._idle.clear()

    def _finished(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    async def _run(self) -> None:
        while True:
            delivery = await self._queue.get()
            self._spawn(delivery)

    def _spawn(self, delivery: Delivery) -> None:
        task = asyncio.get_running_loop().create_task(self._attempt(delivery))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _attempt(self, delivery: Delivery) -> None:
        delivery.attempt += 1
        try:
            await self._send(delivery)
        except Exception as exc:  # any failure: retry later, never raise into the app
            error = f"{type(exc).__name__}: {exc}"[:500]
            if delivery.attempt >= self.config.notify_max_attempts or isinstance(exc, _Permanent):
                log.error(
                    "notification failed for good",
                    extra={"event": delivery.notification.event, "channel": delivery.channel, "error": error},
                )
                self.failed.append((delivery.notification.id, delivery.channel, error))
                self._finished()
                return
            delay = self.config.notify_retry_backoff_s * 2 ** (delivery.attempt - 1)
            log.warning(
                "notification failed; retrying",
                extra={"channel": delivery.channel, "attempt": delivery.attempt, "error": error},
            )
            self._retry_handles[id(delivery)] = asyncio.get_running_loop().call_later(delay, self._retry, delivery)
            return
        self.sent.append((delivery.notification.id, delivery.channel))
        self._finished()

    def _retry(self, delivery: Delivery) -> None:
        self._retry_handles.pop(id(delivery), None)
        self._spawn(delivery)

    async def _send(self, delivery: Delivery) -> None:
        note = delivery.notification
        if delivery.channel == "email":
            await asyncio.to_thread(send_email, self.config, note.recipients, note.subject, note.text)
            return
        assert self._http is not None
        body = orjson.dumps({"event": note.event, "id": note.id, **note.payload})
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            EVENT_HEADER: note.event,
            DELIVERY_HEADER: note.id,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self.config.webhook_secret, timestamp, body),
        }
        response = await self._http.post(delivery.channel, content=body, headers=headers)
        if response.status_code >= 300:
            message = f"webhook answered {response.status_code}"
            if 400 <= response.status_code < 500 and response.status_code not in RETRYABLE_STATUS:
                raise _Permanent(message)
            raise RuntimeError(message)


class _Permanent(RuntimeError):
    """The receiver refused the request itself (4xx): sending it again would not help."""


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
