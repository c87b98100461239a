"""Imports every table so that SQLModel.metadata (migrations, tests) sees the whole schema."""

from sqlmodel import SQLModel

from server.accounts import models as accounts_models
from server.artifacts import models as artifacts_models
from server.cases import models as cases_models
from server.core import audit, job_store
from server.imaging import models as imaging_models
from server.printing import models as printing_models
from server.record import models as record_models
from server.rooms import models as rooms_models

metadata = SQLModel.metadata
__all__ = [
    "accounts_models",
    "artifacts_models",
    "audit",
    "cases_models",
    "imaging_models",
    "job_store",
    "metadata",
    "printing_models",
    "record_models",
    "rooms_models",
]
