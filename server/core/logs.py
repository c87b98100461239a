"""JSON logs carrying the request id and room id of whatever is being handled."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

request_context: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
room_context: contextvars.ContextVar[str | None] = contextvars.ContextVar("room_id", default=None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or request_context.get()
        room_id = getattr(record, "room_id", None) or room_context.get()
        if request_id:
            entry["request_id"] = request_id
        if room_id:
            entry["room_id"] = room_id
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str = "INFO", json_logs: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if json_logs else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
