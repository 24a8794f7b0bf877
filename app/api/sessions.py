"""HTTP routes for login sessions: the caller's own, and an admin's revoke-all for a user."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from app.api.deps import ClaimsDep, SessionServiceDep
from app.api.responses import PROBLEM_RESPONSES
from app.errors import PermissionDeniedError
from app.schemas.session import RevokedSessions, SessionRead

router = APIRouter(prefix="/users", tags=["sessions"], responses=PROBLEM_RESPONSES)


@router.get("/me/sessions", response_model=list[SessionRead])
async def list_my_sessions(claims: ClaimsDep, sessions: SessionServiceDep) -> list[SessionRead]:
    """The caller's live sessions, most recently used first; `current` marks this one."""
    return await sessions.list_for(claims.subject, claims.session_id)


@router.delete("/me/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_my_session(
    session_id: uuid.UUID, claims: ClaimsDep, sessions: SessionServiceDep
) -> None:
    """Sign one of the caller's sessions out (its access and refresh tokens stop working
    on every replica before this answers); 404 for a session that is not the caller's."""
    await sessions.revoke_one(claims.subject, session_id, "user_revoked")


@router.post("/{user_id}/sessions/revoke", response_model=RevokedSessions)
async def revoke_all_sessions(
    user_id: uuid.UUID, claims: ClaimsDep, sessions: SessionServiceDep
) -> RevokedSessions:
    """Admin only: revoke every session of a user (for example after an account takeover)."""
    if not claims.is_admin:
        raise PermissionDeniedError("Only an admin may revoke another user's sessions.")
    revoked = await sessions.revoke_sessions(user_id, None, "admin_revoked")
    return RevokedSessions(revoked=len(revoked))
