"""HTTP routes for tokens: the OAuth2 password flow, refresh and logout."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status
from fastapi.security import OAuth2PasswordRequestForm

from app.api.deps import AuthServiceDep, ClaimsDep, ClientDep, login_rate_limit
from app.api.responses import PROBLEM_RESPONSES
from app.schemas.auth import LogoutRequest, RefreshRequest, TokenPair

router = APIRouter(prefix="/auth", tags=["auth"], responses=PROBLEM_RESPONSES)


@router.post("/token", response_model=TokenPair, dependencies=[Depends(login_rate_limit)])
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], auth: AuthServiceDep, client: ClientDep
) -> TokenPair:
    """OAuth2 password flow: `username` is the email. Each login opens a session."""
    return await auth.login(form.username, form.password, client)


@router.post("/refresh", response_model=TokenPair)
async def refresh(data: RefreshRequest, auth: AuthServiceDep, client: ClientDep) -> TokenPair:
    """Rotate the pair. The replaced refresh token, sent again by the same client within
    REFRESH_REUSE_GRACE_SECONDS, gets the same new pair; any other reuse revokes the session."""
    return await auth.refresh(data.refresh_token, client)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(
    claims: ClaimsDep, auth: AuthServiceDep, data: LogoutRequest | None = None
) -> None:
    await auth.logout(claims, data.refresh_token if data else None)
