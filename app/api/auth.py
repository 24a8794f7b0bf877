"""HTTP routes for tokens: the OAuth2 password flow, refresh and logout."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, status

from app.api.deps import AuthServiceDep, ClaimsDep, ClientDep, login_rate_limit
from app.api.login_route import LoginRoute
from app.api.responses import (
    AUTHENTICATED,
    BAD_CREDENTIALS,
    BAD_REFRESH,
    BODY,
    DEPENDENCIES,
    FORM_BODY,
    RATE_LIMITED,
    responses,
)
from app.schemas.auth import LoginForm, LogoutRequest, RefreshRequest, TokenPair

router = APIRouter(prefix="/auth", tags=["auth"])


async def login(
    form: Annotated[LoginForm, Form()], auth: AuthServiceDep, client: ClientDep
) -> TokenPair:
    """OAuth2 password flow: `username` is the email. Each login opens a session. Rate
    limited per client address (`RATE_LIMIT_LOGIN`)."""
    return await auth.login(form.username, form.password, client)


# An ordinary login form runs the dependencies by hand (see login_route); registered here, in
# its place among the routes, as the decorator would.
router.add_api_route(
    "/token",
    login,
    methods=["POST"],
    route_class_override=LoginRoute,
    response_model=TokenPair,
    dependencies=[Depends(login_rate_limit)],
    operation_id="login",
    summary="Log in (OAuth2 password flow)",
    responses=responses(
        200,
        "A new token pair",
        BAD_CREDENTIALS,
        RATE_LIMITED,
        *FORM_BODY,
        *DEPENDENCIES,
        rate_limited=True,
    ),
)


@router.post(
    "/refresh",
    response_model=TokenPair,
    operation_id="refreshTokens",
    summary="Rotate a refresh token",
    responses=responses(200, "A new token pair", BAD_REFRESH, *BODY, *DEPENDENCIES),
)
async def refresh(data: RefreshRequest, auth: AuthServiceDep, client: ClientDep) -> TokenPair:
    """Rotate the pair. The replaced refresh token, sent again by the same client within
    REFRESH_REUSE_GRACE_SECONDS, gets the same new pair; any other reuse revokes the session."""
    return await auth.refresh(data.refresh_token, client)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="logout",
    summary="Log out",
    responses=responses(
        204,
        "The tokens are revoked",
        *AUTHENTICATED,
        *BODY,
        *DEPENDENCIES,
        rate_limited=True,
    ),
)
async def logout(
    claims: ClaimsDep, auth: AuthServiceDep, data: LogoutRequest | None = None
) -> None:
    """Revoke the bearer's access token and, when given, its refresh token's family."""
    await auth.logout(claims, data.refresh_token if data else None)
