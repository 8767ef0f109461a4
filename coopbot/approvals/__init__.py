"""Collective approval: policies, requests bound to a plan, votes, tally, expiry."""
