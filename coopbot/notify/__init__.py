"""Notification rooms: operation outcomes, swarm alerts and new versions, where configured."""
