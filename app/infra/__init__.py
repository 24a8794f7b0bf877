"""infra layer (see DESIGN.md)."""
