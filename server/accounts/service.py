"""Sites and users: the data functions behind the CLI and the REST API."""

from __future__ import annotations

import re

from sqlmodel import Session, select

from server.accounts.models import Site, User, UserRole
from server.core.auth import hash_password, new_id
from server.core.errors import Conflict, Invalid, NotFound

SITE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
USERNAME = re.compile(r"^[A-Za-z0-9._@-]{2,100}$")
MIN_PASSWORD_CHARS = 10


def create_site(db: Session, *, site_id: str, name: str) -> Site:
    if not SITE_ID.match(site_id):
        raise Invalid("site id must be 2-63 lowercase letters, digits or dashes")
    if db.get(Site, site_id):
        raise Conflict(f"site {site_id!r} already exists")
    site = Site(id=site_id, name=name.strip() or site_id)
    db.add(site)
    db.commit()
    return site


def create_user(
    db: Session,
    *,
    site_id: str,
    username: str,
    password: str,
    role: str,
    display_name: str = "",
    email: str | None = None,
) -> User:
    if not db.get(Site, site_id):
        raise NotFound(f"site {site_id!r} does not exist")
    if role not in {r.value for r in UserRole}:
        raise Invalid(f"role must be one of {[r.value for r in UserRole]}")
    if not USERNAME.match(username):
        raise Invalid("username must be 2-100 letters, digits or . _ @ -")
    if len(password) < MIN_PASSWORD_CHARS:
        raise Invalid(f"password must have at least {MIN_PASSWORD_CHARS} characters")
    if db.exec(select(User).where(User.username == username)).first():
        raise Conflict(f"username {username!r} is taken")
    user = User(
        id=new_id(),
        site_id=site_id,
        username=username,
        display_name=display_name.strip() or username,
        email=email,
        role=role,
        password_hash=hash_password(password),
    )
    db.add(user)
    db.commit()
    return user


def get_user(db: Session, user_id: str) -> User:
    user = db.get(User, user_id)
    if not user:
        raise NotFound(f"user {user_id!r} does not exist")
    return user
