"""HTTP routes for login sessions: the caller's own, and an admin's revoke-all for a user."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from app.api.deps import ClaimsDep, SessionServiceDep
from app.api.responses import (
    ADMIN_ONLY,
    AUTHENTICATED,
    DEPENDENCIES,
    INVALID,
    SESSION_NOT_FOUND,
    responses,
)
from app.errors import PermissionDeniedError
from app.schemas.session import RevokedSessions, SessionRead

router = APIRouter(prefix="/users", tags=["sessions"])


@router.get(
    "/me/sessions",
    response_model=list[SessionRead],
    operation_id="listMySessions",
    summary="The caller's sessions",
    responses=responses(
        200, "Live sessions, most recent first", *AUTHENTICATED, *DEPENDENCIES, rate_limited=True
    ),
)
async def list_my_sessions(claims: ClaimsDep, sessions: SessionServiceDep) -> list[SessionRead]:
    """The caller's live sessions, most recently used first; `current` marks this one."""
    return await sessions.list_for(claims.subject, claims.session_id)


@router.delete(
    "/me/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="revokeMySession",
    summary="Sign one of the caller's sessions out",
    responses=responses(
        204,
        "Signed out everywhere",
        *AUTHENTICATED,
        SESSION_NOT_FOUND,
        INVALID,
        *DEPENDENCIES,
        rate_limited=True,
    ),
)
async def revoke_my_session(
    session_id: uuid.UUID, claims: ClaimsDep, sessions: SessionServiceDep
) -> None:
    """Sign one of the caller's sessions out (its access and refresh tokens stop working
    on every replica before this answers); 404 for a session that is not the caller's."""
    await sessions.revoke_one(claims.subject, session_id, "user_revoked")


@router.post(
    "/{user_id}/sessions/revoke",
    response_model=RevokedSessions,
    operation_id="revokeAllSessions",
    summary="Revoke every session of a user (admin)",
    responses=responses(
        200,
        "How many sessions were revoked",
        *AUTHENTICATED,
        ADMIN_ONLY,
        INVALID,
        *DEPENDENCIES,
        rate_limited=True,
    ),
)
async def revoke_all_sessions(
    user_id: uuid.UUID, claims: ClaimsDep, sessions: SessionServiceDep
) -> RevokedSessions:
    """Admin only: revoke every session of a user (for example after an account takeover)."""
    if not claims.is_admin:
        raise PermissionDeniedError("Only an admin may revoke another user's sessions.")
    revoked = await sessions.revoke_sessions(user_id, None, "admin_revoked")
    return RevokedSessions(revoked=len(revoked))
