"""The OpenAPI document and the /docs page, served with Swagger UI's assets from the package.

Swagger UI's JavaScript and CSS come from the pinned `fastapi-offline` wheel, so /docs works
with no internet (FastAPI's default page loads them from a CDN).
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from app.api.responses import HEADERS, FieldError, Problem

ASSETS_PATH: Final = "/docs/assets"
_ASSETS_DIR: Final = resources.files("fastapi_offline") / "static"
# Headers every response of every operation carries (set by RequestContextMiddleware).
_EVERY_RESPONSE: Final = ("X-Request-ID", "X-Trace-Id")
# The password flow needs only the email and password; Swagger UI would also ask for a
# client id and secret and where to send them, which this service ignores, and explain
# scopes, which it has none of.
_HIDE_CLIENT_FIELDS: Final = """<style>
.auth-container .wrapper:has(> label[for^="client_id"]),
.auth-container .wrapper:has(> label[for^="client_secret"]),
.auth-container .wrapper:has(> label[for^="password_type"]),
.auth-container .scope-def { display: none; }
</style>
</head>"""

DESCRIPTION: Final = """\
Users and authentication.

Sign up with `POST /api/v1/users`, get a token pair from `POST /api/v1/auth/token` (OAuth2
password flow: the username is the email) and send the access token as
`Authorization: Bearer <token>`. In this page, **Authorize** does the login for you.

Every error is an RFC 9457 `application/problem+json` document (schema `Problem`); each
operation lists the problems it can answer. Two more can come from any request: 400
`invalid-host` when `TRUSTED_HOSTS` is set and the Host header is not in it, and 500
`internal-error` (logged with its `request_id`).
"""

TAGS: Final = [
    {"name": "users", "description": "Sign up, read, change and delete accounts."},
    {"name": "auth", "description": "Tokens: log in (password flow), refresh, log out."},
]


def _components(schema: dict[str, Any]) -> dict[str, Any]:
    schemas: dict[str, Any] = schema.setdefault("components", {}).setdefault("schemas", {})
    template = "#/components/schemas/{model}"
    for model in (FieldError, Problem):
        definition = model.model_json_schema(ref_template=template)
        for name, nested in definition.pop("$defs", {}).items():
            schemas.setdefault(name, nested)
        schemas[model.__name__] = definition
    # FastAPI's own validation-error schemas describe a body this service never sends.
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return schemas


def _every_response_headers(schema: dict[str, Any]) -> None:
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            # Operations anyone may call say so, rather than leaving security unstated.
            operation.setdefault("security", [])
            for response in operation.get("responses", {}).values():
                headers = response.setdefault("headers", {})
                for name in _EVERY_RESPONSE:
                    headers.setdefault(name, HEADERS[name])


def _optional_bodies(schema: dict[str, Any]) -> None:
    """An optional body is `required: false` with the model's schema; FastAPI writes it as a
    required-less `anyOf [model, null]`, which client generators turn into a JSON `null`."""
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            body = operation.get("requestBody")
            if not body or body.get("required"):
                continue
            for media in body.get("content", {}).values():
                options = media.get("schema", {}).get("anyOf", [])
                refs = [option for option in options if option != {"type": "null"}]
                if len(options) == 2 and len(refs) == 1:
                    media["schema"] = refs[0]
            body["required"] = False


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The document, built once: FastAPI's, plus the problem schemas and common headers."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=DESCRIPTION,
            routes=app.routes,
            tags=TAGS,
            servers=[{"url": "/", "description": "This service"}],
            license_info={"name": "Apache-2.0", "identifier": "Apache-2.0"},
        )
        _components(schema)
        _every_response_headers(schema)
        _optional_bodies(schema)
        app.openapi_schema = schema
    return app.openapi_schema


def install_docs(app: FastAPI, openapi_url: str, docs_url: str) -> None:
    """Serve the document and a Swagger UI page whose assets come from this process."""

    def openapi() -> dict[str, Any]:
        return build_openapi(app)

    app.openapi = openapi  # type: ignore[method-assign]
    app.mount(ASSETS_PATH, StaticFiles(directory=str(_ASSETS_DIR)), name="docs-assets")

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - API",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            swagger_ui_parameters={
                "displayOperationId": True,
                "defaultModelsExpandDepth": 1,
                "persistAuthorization": False,
            },
        )
        html = bytes(page.body).decode().replace("</head>", _HIDE_CLIENT_FIELDS, 1)
        return HTMLResponse(html)

    app.add_api_route(docs_url, swagger_ui, include_in_schema=False, methods=["GET"])
