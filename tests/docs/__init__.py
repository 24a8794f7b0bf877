"""The API document from outside: a real browser, a generated client, a linter."""
