"""Routes a request with one regular expression, once: the route found names the request's
template for the middleware and is then run without a second search.

Starlette's router tries each route's pattern in turn, and the template of a request is needed
before the router runs (the in-progress gauge, the server span), so a request used to be matched
twice. Here every method has one pattern: the alternation of the paths of the routes that accept
it, in the order of the app's routes, so the first alternative that matches is the route the
router would pick (the first full match). Only a full match is served here; a request no route
takes with its method (404, 405, a slash redirect), a scope with a `root_path`, any scope that
is not HTTP, and every app whose routes cannot all be put in the patterns go to the router
itself, so each of those answers is the router's own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

from fastapi.routing import APIRoute, APIRouter
from starlette.routing import BaseRoute, Match, Mount, Route, WebSocketRoute
from starlette.types import Receive, Scope, Send

# Where the middleware leaves the route it found for the dispatcher to run.
MATCH_KEY: Final = "user_service.route_match"
# A named group of a route's own pattern (its path parameters); inside the alternation it
# becomes a plain group, as each route parses its parameters itself once chosen.
_NAMED_GROUP: Final = re.compile(r"\(\?P<[A-Za-z_][A-Za-z0-9_]*>")
_ANY_METHOD: Final = "*"

Found = tuple[str, str, BaseRoute, Scope]

# matches() that decide by the path and the method alone. FastAPI's APIRoute.matches differs
# from Route's only for a route reached through a nested router, which a flat app has none of.
_PLAIN_MATCHES: Final = (Route.matches, APIRoute.matches)


def _alternative(route: Route | Mount) -> str:
    pattern = route.path_regex.pattern
    if not (pattern.startswith("^") and pattern.endswith("$")):
        raise ValueError(f"unexpected route pattern {pattern!r}")
    return _NAMED_GROUP.sub("(?:", pattern[1:-1])


class RouteTable:
    """The app's routes as one pattern per method, built on first use and again whenever a
    route is added or removed."""

    def __init__(self, router: APIRouter) -> None:
        self._router = router
        self._patterns: dict[str, tuple[re.Pattern[str], list[BaseRoute]]] | None = None
        self._indexed = True
        # What the patterns were built from: a route added or removed later rebuilds them.
        self._built_from: tuple[list[BaseRoute], int] | None = None

    def _build(self) -> dict[str, tuple[re.Pattern[str], list[BaseRoute]]]:
        self._built_from = (self._router.routes, len(self._router.routes))
        self._indexed = True
        routes: list[tuple[Route | Mount, frozenset[str] | None]] = []
        for route in self._router.routes:
            if isinstance(route, WebSocketRoute):
                continue  # never matches an HTTP request
            if type(route) is Mount:
                routes.append((route, None))
            elif isinstance(route, Route) and type(route).matches in _PLAIN_MATCHES:
                routes.append((route, frozenset(route.methods) if route.methods else None))
            else:
                # A route that decides by something else than its path and method (a Host,
                # a nested router, its own matches()): the router must see every request.
                self._indexed = False
                return {}
        methods = {method for _, accepted in routes if accepted for method in accepted}
        patterns = {}
        for method in (*sorted(methods), _ANY_METHOD):
            chosen = [
                route
                for route, accepted in routes
                if accepted is None or (method != _ANY_METHOD and method in accepted)
            ]
            alternatives = "|".join(
                f"(?P<r{number}>{_alternative(route)})" for number, route in enumerate(chosen)
            )
            patterns[method] = (re.compile(f"^(?:{alternatives})$"), list[BaseRoute](chosen))
        return patterns

    def find(self, scope: Scope) -> Found | None:
        """The route the router would run for this request (a full match), or None."""
        if scope["type"] != "http" or scope.get("root_path"):
            return None
        patterns = self._patterns
        built_from = self._built_from
        routes_now = self._router.routes
        if (
            patterns is None
            or built_from is None
            or built_from[0] is not routes_now
            or built_from[1] != len(routes_now)
        ):
            patterns = self._patterns = self._build()
        if not self._indexed:
            return None
        method: str = scope["method"]
        path: str = scope["path"]
        pattern, routes = patterns.get(method) or patterns[_ANY_METHOD]
        matched = pattern.match(path)
        if matched is None or matched.lastgroup is None:
            return None
        route = routes[int(matched.lastgroup[1:])]
        # The route parses its own parameters, exactly as under the router.
        match, child_scope = route.matches(scope)
        if match is not Match.FULL:
            return None
        return path, method, route, child_scope

    def template(self, scope: Scope) -> str:
        """The route template of a request (e.g. /api/v1/users/{user_id}): the route a full
        match found, else the first route the path matches with another method (a 405 counts
        under its template), else "none". Keeps the found route in the scope for dispatch."""
        found = self.find(scope)
        if found is not None:
            scope[MATCH_KEY] = found
            return str(getattr(found[2], "path", "none"))
        return _slow_template(self._router.routes, scope)


def _slow_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    partial: str | None = None
    for route in routes:
        match, _ = route.matches(scope)
        path = getattr(route, "path", None)
        if match is Match.NONE or path is None:
            continue
        if match is Match.FULL:
            return str(path)
        partial = partial or str(path)
    return partial or "none"


class RouteDispatch:
    """The innermost app in place of the router: runs the route found by the table the way the
    router runs a full match, and hands everything else to the router."""

    def __init__(self, router: APIRouter, table: RouteTable) -> None:
        self.router = router
        self.table = table
        # Router middleware (or a body limit of the router's own) must see every request.
        self._direct = router.middleware_stack == router.app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found: Any = scope.pop(MATCH_KEY, None)
        if (
            not self._direct
            or scope["type"] != "http"
            # FastAPI's own telemetry records the route as the router picks it.
            or "fastapi.telemetry" in scope
        ):
            await self.router(scope, receive, send)
            return
        if found is None or found[0] != scope["path"] or found[1] != scope["method"]:
            found = self.table.find(scope)
            if found is None:
                await self.router(scope, receive, send)
                return
        route: BaseRoute = found[2]
        # What the router does with a full match, in its order.
        if "router" not in scope:
            scope["router"] = self.router
        scope.update(found[3])
        await route.handle(scope, receive, send)
