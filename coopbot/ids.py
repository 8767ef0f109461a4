"""Typed identifiers (as mautrix does), so a room id is never passed as a user id."""

from typing import NewType

RoomID = NewType("RoomID", str)
UserID = NewType("UserID", str)
EventID = NewType("EventID", str)
# One swarm operation (its row in the operations table, its lock, its audit rows).
OperationID = NewType("OperationID", str)


def server_of(user_id: str) -> str:
    """The homeserver part of an MXID: `@alice:example.org` -> `example.org`."""
    return user_id.split(":", 1)[1] if ":" in user_id else ""
