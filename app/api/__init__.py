"""HTTP only: routers, middleware and FastAPI dependencies; no SQL and no Redis commands here."""
