"""Adds a router's routes to the app one by one, as flat routes, instead of nesting the router.

`include_router` keeps an included router as one nested entry: to route a request the app's
router asks each nested router whether it matches (a pass over its routes) and then the chosen
one matches again to run the route, so every request pays for two passes over the nested
routes. Added flat, each route is an ordinary `APIRoute` with the full path, matched once.
Each route gets exactly what `include_router` would give it (prefix, tags, dependencies,
responses, response class, unique-id function, strict content type), and the same route class,
so the OpenAPI document and every answer stay the same.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.routing import APIRoute
from fastapi.utils import get_value_or_default


def include_flat(parent: APIRouter, router: APIRouter, prefix: str = "") -> None:
    """`parent.include_router(router, prefix=prefix)`, with each route added flat."""
    if prefix:
        # include_router's own rules for a prefix.
        assert prefix.startswith("/"), "A path prefix must start with '/'"
        assert not prefix.endswith("/"), "A path prefix must not end with '/'"
    if router.on_startup or router.on_shutdown:
        raise ValueError("a router added flat may not carry startup or shutdown handlers")
    for route in router.routes:
        if not isinstance(route, APIRoute):
            raise TypeError(f"only API routes can be added flat, not {route!r}")
        response_class = get_value_or_default(route.response_class, router.default_response_class)
        unique_id = get_value_or_default(
            route.generate_unique_id_function, router.generate_unique_id_function
        )
        strict_content_type = get_value_or_default(
            route.strict_content_type, router.strict_content_type
        )
        parent.add_api_route(
            prefix + route.path,
            route.endpoint,
            response_model=route.response_model,
            status_code=route.status_code,
            tags=list(route.tags),
            dependencies=list(route.dependencies),
            summary=route.summary,
            description=route.description,
            response_description=route.response_description,
            responses=dict(route.responses),
            deprecated=route.deprecated,
            methods=route.methods,
            operation_id=route.operation_id,
            response_model_include=route.response_model_include,
            response_model_exclude=route.response_model_exclude,
            response_model_by_alias=route.response_model_by_alias,
            response_model_exclude_unset=route.response_model_exclude_unset,
            response_model_exclude_defaults=route.response_model_exclude_defaults,
            response_model_exclude_none=route.response_model_exclude_none,
            include_in_schema=route.include_in_schema,
            response_class=response_class,
            name=route.name,
            route_class_override=type(route),
            callbacks=list(route.callbacks or []),
            openapi_extra=route.openapi_extra,
            generate_unique_id_function=unique_id,
            strict_content_type=strict_content_type,
        )
