"""HTTP routes for users."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.api.deps import ClaimsDep, SelfReadDep, UserReadDep, UserServiceDep
from app.api.read_route import UserReadRoute
from app.api.responses import (
    ADMIN_ONLY,
    AUTHENTICATED,
    BAD_CURSOR,
    BODY,
    DEPENDENCIES,
    EMAIL_TAKEN,
    FORBIDDEN,
    INVALID,
    LAST_ADMIN,
    NOT_FOUND,
    responses,
)
from app.schemas.user import UserCreate, UserPage, UserRead, UserUpdate
from app.services.users import MAX_PAGE_SIZE

router = APIRouter(prefix="/users", tags=["users"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    operation_id="signUp",
    summary="Sign up",
    responses=responses(
        201, "The new account", EMAIL_TAKEN, *BODY, *DEPENDENCIES, headers=("Location",)
    ),
)
async def sign_up(data: UserCreate, users: UserServiceDep, response: Response) -> UserRead:
    """Create an account. Anyone may sign up; the email must not be taken (case-insensitive)
    and the password is 8 to 128 characters. Log in with `POST /api/v1/auth/token`."""
    user = await users.create(data)
    response.headers["Location"] = f"/api/v1/users/{user.id}"
    return UserRead.model_validate(user)


@router.get(
    "/me",
    response_model=UserRead,
    operation_id="readMe",
    summary="The caller's account",
    responses=responses(
        200, "The caller", *AUTHENTICATED, NOT_FOUND, *DEPENDENCIES, rate_limited=True
    ),
)
async def read_me(read: SelfReadDep, users: UserServiceDep, response: Response) -> Response:
    """The account the bearer token belongs to (404 once that account is deleted)."""
    return _json(await users.get_json(read.user_id, read.cached), response)


async def read_user(read: UserReadDep, users: UserServiceDep, response: Response) -> Response:
    """Any user, for any authenticated caller; served from the cache after the first read."""
    return _json(await users.get_json(read.user_id, read.cached), response)


# The hottest route: its dependencies run by hand (see read_route); registered here, in its
# place among the routes, as the decorator would.
router.add_api_route(
    "/{user_id}",
    read_user,
    methods=["GET"],
    route_class_override=UserReadRoute,
    response_model=UserRead,
    operation_id="readUser",
    summary="Any account by id",
    responses=responses(
        200,
        "The user",
        *AUTHENTICATED,
        NOT_FOUND,
        INVALID,
        *DEPENDENCIES,
        rate_limited=True,
    ),
)


@router.patch(
    "/{user_id}",
    response_model=UserRead,
    operation_id="updateUser",
    summary="Change an account",
    responses=responses(
        200,
        "The changed user",
        *AUTHENTICATED,
        FORBIDDEN,
        NOT_FOUND,
        EMAIL_TAKEN,
        LAST_ADMIN,
        *BODY,
        *DEPENDENCIES,
        rate_limited=True,
    ),
)
async def update_user(
    user_id: uuid.UUID, data: UserUpdate, claims: ClaimsDep, users: UserServiceDep
) -> UserRead:
    """Change `full_name`, `email` or `password` of your own account (an admin: any account,
    and `is_active`/`is_admin` too). A new password, a disabled account or a changed admin
    flag revokes the account's tokens."""
    return UserRead.model_validate(await users.update(claims, user_id, data))


@router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="deleteUser",
    summary="Delete an account",
    responses=responses(
        204,
        "Deleted; its tokens are revoked",
        *AUTHENTICATED,
        FORBIDDEN,
        NOT_FOUND,
        LAST_ADMIN,
        INVALID,
        *DEPENDENCIES,
        rate_limited=True,
    ),
)
async def delete_user(user_id: uuid.UUID, claims: ClaimsDep, users: UserServiceDep) -> None:
    """Delete your own account (an admin: any account)."""
    await users.delete(claims, user_id)


@router.get(
    "",
    response_model=UserPage,
    operation_id="listUsers",
    summary="List accounts (admin)",
    responses=responses(
        200,
        "One page of users, oldest first",
        BAD_CURSOR,
        *AUTHENTICATED,
        ADMIN_ONLY,
        INVALID,
        *DEPENDENCIES,
        rate_limited=True,
    ),
)
async def list_users(
    claims: ClaimsDep,
    users: UserServiceDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 20,
    cursor: Annotated[str | None, Query(max_length=256)] = None,
) -> UserPage:
    """Admins only: keyset pages of at most `limit` users; pass `next_cursor` back as
    `cursor` for the next page."""
    return await users.list(claims, limit=limit, cursor=cursor)


def _json(payload: bytes, response: Response) -> Response:
    # The cached bytes are already the response body: skip parsing and re-serialising. The
    # headers the dependencies set (lowercase, encoded) are added as they are.
    result = Response(content=payload, media_type="application/json")
    result.raw_headers.extend(response.raw_headers)
    return result
