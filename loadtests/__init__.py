"""Load tests: Locust journeys, the release gate and the tuning sweep for user-service."""
