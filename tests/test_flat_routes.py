"""Routes added flat are the routes `include_router` would make: same attributes, same OpenAPI
document. Fails when a FastAPI upgrade gives included routes something include_flat lacks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from app.api.flat_routes import include_flat
from app.main import ROUTERS, create_app
from app.settings import Settings

# Every attribute FastAPI gives an included route (and the OpenAPI document reads).
ATTRIBUTES = (
    "path",
    "path_format",
    "name",
    "methods",
    "endpoint",
    "tags",
    "dependencies",
    "summary",
    "description",
    "response_description",
    "responses",
    "deprecated",
    "operation_id",
    "response_model",
    "status_code",
    "include_in_schema",
    "response_class",
    "callbacks",
    "openapi_extra",
    "unique_id",
    "strict_content_type",
    "stream_item_type",
    "response_model_include",
    "response_model_exclude",
    "response_model_by_alias",
    "response_model_exclude_unset",
    "response_model_exclude_defaults",
    "response_model_exclude_none",
    "is_sse_stream",
    "is_json_stream",
    "_embed_body_fields",
)


def _value(value: Any) -> Any:
    # Defaults and dependency markers compare by what they hold.
    return repr(value)


def _apps() -> tuple[FastAPI, FastAPI]:
    nested, flat = FastAPI(openapi_url=None), FastAPI(openapi_url=None)
    for router, prefix in ROUTERS:
        nested.include_router(router, prefix=prefix)
        include_flat(flat.router, router, prefix)
    return nested, flat


def test_flat_routes_carry_what_include_router_gives() -> None:
    nested, flat = _apps()
    included = list(iter_route_contexts(nested.routes))
    assert len(included) == len(flat.routes)
    for context, route in zip(included, flat.routes, strict=True):
        assert isinstance(route, APIRoute)
        assert type(route) is type(context.original_route)
        for name in ATTRIBUTES:
            assert _value(getattr(route, name)) == _value(getattr(context, name)), (
                route.path,
                name,
            )
        assert route.dependency_overrides_provider is flat
        assert [param.name for param in route.dependant.query_params] == [
            param.name for param in context.dependant.query_params
        ]


def _document(app: FastAPI) -> str:
    schema = get_openapi(title="t", version="1", routes=app.routes)
    return json.dumps(schema, sort_keys=False)


def test_openapi_document_is_the_same_as_with_include_router() -> None:
    nested, flat = _apps()
    assert _document(flat) == _document(nested)


def test_service_openapi_document_is_the_same_as_with_include_router() -> None:
    settings = Settings(APP_ENV="test", JWT_SECRET_KEY="x" * 40)
    app = create_app(settings)
    document = app.openapi()
    nested = FastAPI(openapi_url=None)
    for router, prefix in ROUTERS:
        nested.include_router(router, prefix=prefix)
    # The service's own document builder, run over the nested routes.
    app.openapi_schema = None
    original = app.router.routes
    app.router.routes = list(nested.routes)
    try:
        rebuilt = app.openapi()
    finally:
        app.router.routes = original
        app.openapi_schema = None
    assert json.dumps(rebuilt) == json.dumps(document)


def test_routers_that_include_flat_cannot_copy_are_refused() -> None:
    router = APIRouter()
    router.add_route("/plain", lambda request: None)
    with pytest.raises(TypeError):
        include_flat(FastAPI().router, router)
    hooked = APIRouter(on_startup=[lambda: None])
    with pytest.raises(ValueError):
        include_flat(FastAPI().router, hooked)
