"""Users: creation with encrypted contact data, lookup by blind index, decrypted views."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.crypto import DataKey, IntegrityError, decrypt_field, encrypt_field
from helpdesk.errors import Conflict, DataIntegrityError, NotFound
from helpdesk.runtime import Runtime
from helpdesk.services import sessions
from models.audit import AuditLog
from models.enums import Role
from models.user import User

TABLE = "users"


@dataclass(frozen=True, slots=True)
class UserView:
    """A user with PHI decrypted, for the few places allowed to show it."""

    id: uuid.UUID
    email: str
    first_name: str | None
    last_name: str | None
    phone: str | None
    role: str
    is_active: bool
    email_verified: bool
    mfa_enabled: bool
    created_at: datetime
    last_login_at: datetime | None = None

    @property
    def full_name(self) -> str | None:
        """First and last name joined (what the product returned before it had both)."""
        return join_names(self.first_name, self.last_name)


def split_full_name(full_name: str | None) -> tuple[str | None, str | None]:
    """A full name as (first, last): the first word, then the rest ("Ludwig van Beethoven"
    → ("Ludwig", "van Beethoven")); one word is a first name only. Used by migration 0006
    and for callers that still send `full_name`."""
    words = (full_name or "").split()
    if not words:
        return None, None
    return words[0], " ".join(words[1:]) or None


def join_names(first_name: str | None, last_name: str | None) -> str | None:
    return " ".join(part for part in (first_name, last_name) if part) or None


def _seal(key: DataKey, user_id: uuid.UUID, column: str, value: str | None) -> bytes | None:
    if value is None:
        return None
    return encrypt_field(key, value, table=TABLE, column=column, row_id=user_id)


def _open(key: DataKey, user_id: uuid.UUID, column: str, blob: bytes | None) -> str | None:
    if blob is None:
        return None
    try:
        return decrypt_field(key, blob, table=TABLE, column=column, row_id=user_id)
    except IntegrityError as exc:
        # Audited in a transaction of its own (the request's rolls back); no value leaves.
        raise DataIntegrityError(
            "stored user data failed its integrity check",
            audit={
                "action": "integrity.failure",
                "outcome": "failure",
                "table": TABLE,
                "record_id": user_id,
                "details": {"column": column},
            },
        ) from exc


async def find_by_email(session: AsyncSession, runtime: Runtime, email: str) -> User | None:
    return await session.scalar(
        select(User).where(User.email_bidx == runtime.blind_index.email(email))
    )


async def create_user(
    session: AsyncSession,
    runtime: Runtime,
    *,
    email: str,
    password: str,
    first_name: str | None = None,
    last_name: str | None = None,
    full_name: str | None = None,
    phone: str | None = None,
    role: Role = Role.END_USER,
    created_by: uuid.UUID | None = None,
    email_verified_at: datetime | None = None,
    password_hash: str | None = None,
) -> User:
    """A new user; a second account for the same normalised email is a Conflict.

    `password_hash` lets a caller hash outside the transaction (argon2 is slow); a
    `full_name` without first and last names is split (`split_full_name`)."""
    if full_name is not None and first_name is None and last_name is None:
        first_name, last_name = split_full_name(full_name)
    bidx = runtime.blind_index.email(email)
    if await session.scalar(select(User.id).where(User.email_bidx == bidx)) is not None:
        raise Conflict("an account with this email already exists")
    key = await runtime.keys.create(session)
    user_id = uuid.uuid4()
    user = User(
        id=user_id,
        data_key_id=key.key_id,
        email_bidx=bidx,
        email_enc=_seal(key, user_id, "email", email.strip()),
        first_name_enc=_seal(key, user_id, "first_name", first_name),
        last_name_enc=_seal(key, user_id, "last_name", last_name),
        phone_enc=_seal(key, user_id, "phone", phone),
        role=role.value,
        password_hash=password_hash or runtime.passwords.hash(password),
        created_by=created_by,
        updated_by=created_by,
        email_verified_at=email_verified_at,
    )
    session.add(user)
    await session.flush()
    return user


async def set_contact(
    session: AsyncSession,
    runtime: Runtime,
    user: User,
    *,
    first_name: str | None = None,
    last_name: str | None = None,
    clear_last_name: bool = False,
    phone: str | None = None,
    clear_phone: bool = False,
) -> list[str]:
    """Change the encrypted contact fields; returns the names of the fields changed."""
    key = await runtime.keys.get(session, user.data_key_id)
    changed = []
    if first_name is not None:
        user.first_name_enc = _seal(key, user.id, "first_name", first_name)
        changed.append("first_name")
    if last_name is not None or clear_last_name:
        user.last_name_enc = _seal(key, user.id, "last_name", last_name)
        changed.append("last_name")
    if phone is not None or clear_phone:
        user.phone_enc = _seal(key, user.id, "phone", phone)
        changed.append("phone")
    return changed


async def seal_mfa_secret(
    session: AsyncSession, runtime: Runtime, user: User, secret: str | None
) -> None:
    key = await runtime.keys.get(session, user.data_key_id)
    user.mfa_secret_enc = _seal(key, user.id, "mfa_secret", secret)


async def open_mfa_secret(session: AsyncSession, runtime: Runtime, user: User) -> str | None:
    key = await runtime.keys.get(session, user.data_key_id)
    return _open(key, user.id, "mfa_secret", user.mfa_secret_enc)


def view_with_key(user: User, key: DataKey) -> UserView:
    return UserView(
        id=user.id,
        email=_open(key, user.id, "email", user.email_enc) or "",
        first_name=_open(key, user.id, "first_name", user.first_name_enc),
        last_name=_open(key, user.id, "last_name", user.last_name_enc),
        phone=_open(key, user.id, "phone", user.phone_enc),
        role=user.role,
        is_active=user.is_active,
        email_verified=user.email_verified_at is not None,
        mfa_enabled=user.mfa_enabled,
        created_at=user.created_at,
        last_login_at=user.last_login_at,
    )


async def view(session: AsyncSession, runtime: Runtime, user: User) -> UserView:
    return view_with_key(user, await runtime.keys.get(session, user.data_key_id))


async def views(session: AsyncSession, runtime: Runtime, users: Sequence[User]) -> list[UserView]:
    """Decrypted views of many users with one key lookup."""
    keys = await runtime.keys.get_many(session, [u.data_key_id for u in users])
    return [view_with_key(u, keys[u.data_key_id]) for u in users if u.data_key_id in keys]


# --- account management (auth & users area) -------------------------------------------
# Role changes, deactivation and listings for administrators, and the audit view of one
# user. Routes call these; the caller's transaction commits them.


async def get_user(session: AsyncSession, user_id: uuid.UUID, *, for_update: bool = False) -> User:
    """The user with this id, or NotFound."""
    user = await session.get(User, user_id, with_for_update=for_update or None)
    if user is None:
        raise NotFound("no such user")
    return user


async def list_page(
    session: AsyncSession,
    *,
    offset: int,
    limit: int,
    role: Role | None = None,
    active: bool | None = None,
) -> tuple[list[User], int]:
    """One page of users (oldest first) and the total matching the filters."""
    conditions = []
    if role is not None:
        conditions.append(User.role == role.value)
    if active is not None:
        conditions.append(User.is_active.is_(active))
    total = await session.scalar(select(func.count()).select_from(User).where(*conditions))
    rows = await session.scalars(
        select(User)
        .where(*conditions)
        .order_by(User.created_at, User.id)
        .offset(offset)
        .limit(limit)
    )
    return list(rows), int(total or 0)


async def active_agents(session: AsyncSession) -> list[User]:
    """Every active support agent (for assignment pickers)."""
    rows = await session.scalars(
        select(User)
        .where(User.role == Role.SUPPORT_AGENT.value, User.is_active.is_(True))
        .order_by(User.created_at, User.id)
    )
    return list(rows)


async def change_role(
    session: AsyncSession,
    runtime: Runtime,
    *,
    actor_id: uuid.UUID,
    user_id: uuid.UUID,
    role: Role,
) -> User:
    """Give a user another role (administrators only; never one's own). The change is
    audited with before and after, and the user's sessions end so that it bites at once."""
    if user_id == actor_id:
        raise Conflict("you cannot change your own role")
    user = await get_user(session, user_id, for_update=True)
    before = user.role
    if before == role.value:
        return user
    user.role = role.value
    user.updated_by = actor_id
    revoked = await sessions.revoke_all_for_user(session, runtime, user.id, "role_change")
    await runtime.audit.record(
        session,
        "user.role_change",
        table=TABLE,
        record_id=user.id,
        details={"before": before, "after": role.value, "sessions_revoked": revoked},
    )
    return user


async def deactivate(
    session: AsyncSession, runtime: Runtime, *, actor_id: uuid.UUID, user_id: uuid.UUID
) -> tuple[User, int]:
    """Deactivate a user and revoke every session and refresh chain of theirs at once.
    Returns the user and the number of sessions revoked (repeating it is harmless)."""
    if user_id == actor_id:
        raise Conflict("you cannot deactivate yourself")
    user = await get_user(session, user_id, for_update=True)
    already = not user.is_active
    if not already:
        user.is_active = False
        user.deactivated_at = datetime.now(UTC)
        user.updated_by = actor_id
    revoked = await sessions.revoke_all_for_user(session, runtime, user.id, "deactivated")
    await runtime.audit.record(
        session,
        "user.deactivate",
        table=TABLE,
        record_id=user.id,
        details={"sessions_revoked": revoked, "already_inactive": already},
    )
    return user, revoked


def audit_filter(user_id: uuid.UUID) -> ColumnElement[bool]:
    """Audit rows by the user or about the user."""
    return or_(
        AuditLog.actor_id == user_id,
        and_(AuditLog.table_name == TABLE, AuditLog.record_id == str(user_id)),
    )


async def audit_rows_of(
    session: AsyncSession, user_id: uuid.UUID, *, offset: int, limit: int
) -> tuple[list[AuditLog], int]:
    """Audit rows by the user or about the user, newest first (rows never hold PHI)."""
    where = audit_filter(user_id)
    total = await session.scalar(select(func.count()).select_from(AuditLog).where(where))
    rows = await session.scalars(
        select(AuditLog).where(where).order_by(AuditLog.seq.desc()).offset(offset).limit(limit)
    )
    return list(rows), int(total or 0)
