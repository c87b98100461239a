"""FastAPI dependencies: settings, database session, the calling principal. Aliases per the template."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from server.core.auth import Principal, authenticate
from server.core.db import Database
from server.core.errors import Unauthenticated
from server.settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_database(request: Request) -> Database:
    return request.app.state.db  # type: ignore[no-any-return]


def get_session(request: Request) -> Iterator[Session]:
    with get_database(request).session() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("send Authorization: Bearer <access token or API key>")
    return token.strip()


def current_principal(request: Request, db: SessionDep, settings: SettingsDep) -> Principal:
    principal = authenticate(db, settings, bearer_token(request))
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None
