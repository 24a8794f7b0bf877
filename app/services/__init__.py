"""Business rules (users, passwords, tokens); they raise domain errors, never HTTP ones."""
