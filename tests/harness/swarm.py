"""Fixtures for this component are being written; see the module owner."""
