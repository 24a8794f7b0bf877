"""Pydantic request and response models: the shapes of the public API."""
