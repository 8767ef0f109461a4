"""coopbot: a Matrix chat-ops bot for co-ops that run Co-op Cloud recipes on Docker Swarm."""

__version__ = "0.1.0"
