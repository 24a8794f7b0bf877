"""HTTP routes for users."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.api.deps import ClaimsDep, SelfReadDep, UserReadDep, UserServiceDep
from app.api.responses import PROBLEM_RESPONSES
from app.schemas.user import UserCreate, UserPage, UserRead, UserUpdate
from app.services.users import MAX_PAGE_SIZE

router = APIRouter(prefix="/users", tags=["users"], responses=PROBLEM_RESPONSES)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=UserRead)
async def sign_up(data: UserCreate, users: UserServiceDep, response: Response) -> UserRead:
    user = await users.create(data)
    response.headers["Location"] = f"/api/v1/users/{user.id}"
    return UserRead.model_validate(user)


@router.get("/me", response_model=UserRead)
async def read_me(read: SelfReadDep, users: UserServiceDep, response: Response) -> Response:
    return _json(await users.get_json(read.user_id, read.cached), response)


@router.get("/{user_id}", response_model=UserRead)
async def read_user(read: UserReadDep, users: UserServiceDep, response: Response) -> Response:
    return _json(await users.get_json(read.user_id, read.cached), response)


@router.patch("/{user_id}", response_model=UserRead)
async def update_user(
    user_id: uuid.UUID, data: UserUpdate, claims: ClaimsDep, users: UserServiceDep
) -> UserRead:
    return UserRead.model_validate(await users.update(claims, user_id, data))


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_user(user_id: uuid.UUID, claims: ClaimsDep, users: UserServiceDep) -> None:
    await users.delete(claims, user_id)


@router.get("", response_model=UserPage)
async def list_users(
    claims: ClaimsDep,
    users: UserServiceDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 20,
    cursor: Annotated[str | None, Query(max_length=256)] = None,
) -> UserPage:
    return await users.list(claims, limit=limit, cursor=cursor)


def _json(payload: bytes, response: Response) -> Response:
    # The cached bytes are already the response body: skip parsing and re-serialising.
    return Response(content=payload, media_type="application/json", headers=dict(response.headers))
