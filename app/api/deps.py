"""FastAPI dependencies: resources, the admitted caller (token state, rate limit and a read's
cache entry in one Redis round trip), and the services."""

from __future__ import annotations

import uuid
from typing import Annotated, NamedTuple

from fastapi import Depends, Request, Response
from fastapi.security import OAuth2PasswordBearer

from app.errors import RateLimitedError
from app.infra.cache import Lookup, UserCache
from app.infra.rate_limit import RateLimitDecision
from app.observability.metrics import RateLimitScope, record_rate_limited
from app.services.auth import AuthService
from app.services.sessions import ClientInfo, SessionService
from app.services.tokens import TokenClaims
from app.services.users import UserService
from app.settings import Rate
from app.wiring import Resources

oauth2_scheme = OAuth2PasswordBearer(
    tokenUrl="/api/v1/auth/token",
    description="Log in with your **email** as the username and your password.",
)


# Every dependency here is `async def`: FastAPI runs plain `def` dependencies in a thread
# pool, a hop that costs more than the work these do.


async def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


# Where the rate-limit decision waits for an error response, in the request's state (see
# main._problem): the dependency's `response` is dropped when the request ends in an exception.
RATE_LIMIT_DECISION = "rate_limit_decision"


def _apply(
    decision: RateLimitDecision | None,
    request: Request,
    response: Response,
    scope: RateLimitScope,
    rate: Rate,
) -> None:
    if decision is None:
        return
    if not decision.allowed:
        record_rate_limited(scope)
        raise RateLimitedError(
            f"Rate limit of {rate.limit} per {rate.period_seconds}s exceeded; "
            f"retry in {decision.reset_seconds}s.",
            headers=decision.headers(),
        )
    # Straight into the raw lists: setting headers by name encodes, lowercases and searches
    # for each, and the state object is built for this one write; both on every request.
    response.raw_headers.extend(decision.raw_headers())
    request.scope.setdefault("state", {})[RATE_LIMIT_DECISION] = decision


class ReadRequest(NamedTuple):
    """An admitted caller, the user it reads, and that user's cache entry if one was read
    in the admission round trip."""

    claims: TokenClaims
    user_id: uuid.UUID
    cached: Lookup | None


async def _admit(
    claims: TokenClaims,
    resources: Resources,
    request: Request,
    response: Response,
    reads: uuid.UUID | None,
) -> Lookup | None:
    """Revocation, rate limit and (for a read) the cache entry: one Redis round trip."""
    rate = resources.settings.rate_limit_api if resources.settings.rate_limit_enabled else None
    key = resources.cache.prefetch_key(reads) if reads is not None else None
    admission = await resources.gate.admit(claims, rate, key)
    _apply(admission.rate_limit, request, response, "api", resources.settings.rate_limit_api)
    return UserCache.prefetched(admission.prefetched) if admission.did_prefetch else None


async def current_claims(
    token: Annotated[str, Depends(oauth2_scheme)],
    resources: ResourcesDep,
    request: Request,
    response: Response,
) -> TokenClaims:
    """The authenticated caller, not revoked, rate limited per user."""
    claims = resources.tokens.decode(token, "access")
    await _admit(claims, resources, request, response, None)
    return claims


async def read_of_user(
    user_id: uuid.UUID,
    token: Annotated[str, Depends(oauth2_scheme)],
    resources: ResourcesDep,
    request: Request,
    response: Response,
) -> ReadRequest:
    claims = resources.tokens.decode(token, "access")
    cached = await _admit(claims, resources, request, response, user_id)
    return ReadRequest(claims, user_id, cached)


async def read_of_self(
    token: Annotated[str, Depends(oauth2_scheme)],
    resources: ResourcesDep,
    request: Request,
    response: Response,
) -> ReadRequest:
    claims = resources.tokens.decode(token, "access")
    cached = await _admit(claims, resources, request, response, claims.subject)
    return ReadRequest(claims, claims.subject, cached)


ClaimsDep = Annotated[TokenClaims, Depends(current_claims)]
UserReadDep = Annotated[ReadRequest, Depends(read_of_user)]
SelfReadDep = Annotated[ReadRequest, Depends(read_of_self)]


async def login_rate_limit(request: Request, resources: ResourcesDep, response: Response) -> None:
    if not resources.settings.rate_limit_enabled:
        return
    client = request.client.host if request.client else "unknown"
    rate = resources.settings.rate_limit_login
    decision = await resources.rate_limiter.hit("login", client, rate)
    _apply(decision, request, response, "login", rate)


async def client_info(request: Request) -> ClientInfo:
    # request.client is already the address the trusted proxies forwarded for.
    return ClientInfo(
        user_agent=request.headers.get("user-agent"),
        address=request.client.host if request.client else None,
    )


ClientDep = Annotated[ClientInfo, Depends(client_info)]


async def get_session_service(resources: ResourcesDep) -> SessionService:
    return resources.login_sessions


SessionServiceDep = Annotated[SessionService, Depends(get_session_service)]


async def get_user_service(resources: ResourcesDep) -> UserService:
    return resources.users


async def get_auth_service(resources: ResourcesDep) -> AuthService:
    return resources.auth


UserServiceDep = Annotated[UserService, Depends(get_user_service)]
AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]
