"""SQLite state: numbered migrations and one small repository class per table family."""
