"""The modules that register job kinds; the app and every worker (local or Celery) import them all."""

from __future__ import annotations

import importlib

JOB_MODULES = (
    "server.core.jobs",
    "server.imaging.tasks",
    "server.imaging.pacs_pull",
    "server.design.tasks",
    "server.printing.tasks",
)


def load_all() -> None:
    for module in JOB_MODULES:
        importlib.import_module(module)
