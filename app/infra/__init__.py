"""The outside world: database engine, Redis client, cache, rate limiter, readiness checks."""
