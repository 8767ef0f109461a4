"""Swarm operations: which apps a room controls, planning with preflight, deploy and recovery."""
