"""High-availability engines run for real: PgBouncer, a PostgreSQL standby, Redis Sentinel."""
