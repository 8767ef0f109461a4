"""Command families, one module each. Imported as `coopbot.commands` (see pyproject.toml)."""
