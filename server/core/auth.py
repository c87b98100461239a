"""Authentication: argon2 password hashes, short-lived JWT access tokens bound to a revocable login
session, refresh tokens, and API keys for machines. One `Principal` comes out of every credential."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, select

from server.accounts.models import ApiKey, AuthSession, User
from server.core.db import now_ms
from server.core.errors import Unauthenticated
from server.settings import Settings

_hasher = PasswordHasher()
API_KEY_PREFIX = "trk_"
JWT_ALGORITHM = "HS256"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user (through a login session) or a machine (through an API key)."""

    user_id: str
    site_id: str
    role: str
    display_name: str
    session_id: str | None = None
    api_key_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def token_digest(token: str) -> str:
    """High-entropy random tokens need no slow hash; sha256 keeps a database leak from replaying them."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in_s: int
    session_id: str
    user_id: str
    site_id: str


def _access_token(settings: Settings, user: User, session_id: str) -> str:
    now = now_ms() // 1000
    claims = {
        "sub": user.id,
        "site": user.site_id,
        "role": user.role,
        "sid": session_id,
        "iat": now,
        "exp": now + settings.access_token_ttl_s,
        "typ": "access",
    }
    return jwt.encode(claims, settings.secret_key, algorithm=JWT_ALGORITHM)


def login(db: Session, settings: Settings, username: str, password: str, ip: str | None = None) -> TokenPair:
    user = db.exec(select(User).where(User.username == username)).first()
    # Verify against a dummy hash when the user is unknown so timing does not reveal usernames.
    valid = verify_password(user.password_hash if user else _DUMMY_HASH, password)
    if not user or not valid or not user.active:
        raise Unauthenticated("wrong username or password")
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
        db.add(user)
    return _open_session(db, settings, user, ip)


def _open_session(db: Session, settings: Settings, user: User, ip: str | None) -> TokenPair:
    refresh = secrets.token_urlsafe(32)
    session = AuthSession(
        id=new_id(),
        user_id=user.id,
        refresh_hash=token_digest(refresh),
        expires_at_ms=now_ms() + settings.refresh_token_ttl_s * 1000,
        ip=ip,
    )
    db.add(session)
    db.commit()
    return TokenPair(
        _access_token(settings, user, session.id),
        refresh,
        settings.access_token_ttl_s,
        session.id,
        user.id,
        user.site_id,
    )


def refresh(db: Session, settings: Settings, refresh_token: str) -> TokenPair:
    """Rotate: the old session ends and a new one starts, so a stolen refresh token works at most once."""
    session = db.exec(select(AuthSession).where(AuthSession.refresh_hash == token_digest(refresh_token))).first()
    if not session or session.revoked_at_ms or session.expires_at_ms < now_ms():
        raise Unauthenticated("refresh token is invalid, expired or revoked")
    user = db.get(User, session.user_id)
    if not user or not user.active:
        raise Unauthenticated("account is disabled")
    session.revoked_at_ms = now_ms()
    db.add(session)
    return _open_session(db, settings, user, session.ip)


def logout(db: Session, session_id: str) -> None:
    session = db.get(AuthSession, session_id)
    if session and not session.revoked_at_ms:
        session.revoked_at_ms = now_ms()
        db.add(session)
        db.commit()


def create_api_key(db: Session, *, site_id: str, name: str, role: str, created_by: str) -> tuple[ApiKey, str]:
    key_id = new_id()[:16]
    secret = secrets.token_urlsafe(32)
    key = ApiKey(id=key_id, site_id=site_id, name=name, role=role, key_hash=token_digest(secret), created_by=created_by)
    db.add(key)
    db.commit()
    return key, f"{API_KEY_PREFIX}{key_id}_{secret}"


def _principal_from_api_key(db: Session, token: str) -> Principal:
    key_id, _, secret = token[len(API_KEY_PREFIX) :].partition("_")
    key = db.get(ApiKey, key_id) if key_id else None
    if not key or key.revoked_at_ms or not hmac.compare_digest(key.key_hash, token_digest(secret)):
        raise Unauthenticated("API key is invalid or revoked")
    return Principal(
        user_id=f"key:{key.id}", site_id=key.site_id, role=key.role, display_name=key.name, api_key_id=key.id
    )


def authenticate(db: Session, settings: Settings, token: str) -> Principal:
    """Resolve a bearer credential (access JWT or API key) to a principal, or raise Unauthenticated."""
    if not token:
        raise Unauthenticated("no credentials")
    if token.startswith(API_KEY_PREFIX):
        return _principal_from_api_key(db, token)
    try:
        claims = jwt.decode(
            token, settings.secret_key, algorithms=[JWT_ALGORITHM], options={"require": ["exp", "sub", "sid"]}
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("access token expired; refresh it") from exc
    except jwt.PyJWTError as exc:
        raise Unauthenticated("access token is invalid") from exc
    if claims.get("typ") != "access":
        raise Unauthenticated("not an access token")
    session = db.get(AuthSession, claims["sid"])
    if not session or session.revoked_at_ms:
        raise Unauthenticated("session was logged out")
    user = db.get(User, claims["sub"])
    if not user or not user.active:
        raise Unauthenticated("account is disabled")
    return Principal(user.id, user.site_id, user.role, user.display_name, session_id=session.id)


_DUMMY_HASH = _hasher.hash("not-a-real-password")
