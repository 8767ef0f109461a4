"""Approval requests and their votes (the row types are this module's own: the approvals
package imports them from here, never the other way round).

State changes are single conditional UPDATEs (`WHERE state = 'open'`), so however many vote
events arrive at once, exactly one caller wins the transition to `running`: a request never
executes twice.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from coopbot.ids import EventID, RoomID, UserID
from coopbot.store.database import Database


class RequestState(StrEnum):
    OPEN = "open"  # waiting for votes
    RUNNING = "running"  # approved; its plan is being checked and run
    DONE = "done"
    FAILED = "failed"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    VOID = "void"  # the plan changed before it ran; a fresh request replaces it
    # The bot stopped (or could not report) while it ran: the outcome is in the thread, if any.
    INTERRUPTED = "interrupted"


OPEN = RequestState.OPEN
RUNNING = RequestState.RUNNING
CLOSED_STATES = frozenset(RequestState) - {OPEN, RUNNING}


class Choice(StrEnum):
    CONSENT = "consent"  # 👍, `!approve`
    STAND_ASIDE = "stand aside"  # 🤷, `!abstain`: takes part, neither consents nor blocks
    BLOCK = "block"  # 👎, `!deny`

    @staticmethod
    def of(approve: bool | None) -> Choice:
        if approve is None:
            return Choice.STAND_ASIDE
        return Choice.CONSENT if approve else Choice.BLOCK


CHOICE_APPROVE: dict[Choice, bool | None] = {
    Choice.CONSENT: True, Choice.STAND_ASIDE: None, Choice.BLOCK: False}


@dataclass(frozen=True)
class Vote:
    voter: UserID
    approve: bool | None  # None: a stand aside
    event_id: EventID
    seq: int  # the bot's own receive order; sender timestamps are never trusted
    reason: str = ""
    via: str = "command"  # "reaction" or "command" (!approve / !abstain / !deny)

    @property
    def choice(self) -> Choice:
        return Choice.of(self.approve)


@dataclass(frozen=True)
class ApprovalRequest:
    id: int
    room_id: RoomID
    command_event_id: EventID
    thread_root: EventID
    card_event_id: EventID | None
    requester: UserID
    command: str
    args: dict[str, str]
    operation: str
    app: str
    binding: str
    plan_text: str
    policy: dict[str, Any]
    created_at: float
    expires_at: float
    state: str
    closed_at: float | None
    outcome: str
    reminded_at: float | None = None  # when the reminder of who has not voted was posted

    @staticmethod
    def of_row(row: sqlite3.Row) -> ApprovalRequest:
        """A stored request, its columns read by name."""
        card = row["card_event_id"]
        return ApprovalRequest(
            id=int(row["id"]), room_id=RoomID(row["room_id"]),
            command_event_id=EventID(row["command_event_id"]),
            thread_root=EventID(row["thread_root"]),
            card_event_id=EventID(card) if card is not None else None,
            requester=UserID(row["requester"]), command=row["command"],
            args=json.loads(row["args"]), operation=row["operation"], app=row["app"],
            binding=row["binding"], plan_text=row["plan_text"],
            policy=json.loads(row["policy"]), created_at=row["created_at"],
            expires_at=row["expires_at"], state=row["state"], closed_at=row["closed_at"],
            outcome=row["outcome"], reminded_at=row["reminded_at"],
        )


class ApprovalStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self, *, room_id: str, command_event_id: str, thread_root: str, requester: str,
        command: str, args: dict[str, str], operation: str, app: str, binding: str,
        plan_text: str, policy: dict[str, Any], expires_in: float,
    ) -> ApprovalRequest:
        now = time.time()
        cursor = await self._db.conn.execute(
            "INSERT INTO approval_requests(room_id, command_event_id, thread_root, requester,"
            " command, args, operation, app, binding, plan_text, policy, created_at, expires_at)"
            " VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (room_id, command_event_id, thread_root, requester, command, json.dumps(args),
             operation, app, binding, plan_text, json.dumps(policy), now, now + expires_in),
        )
        request = await self.get(int(cursor.lastrowid or 0))
        assert request is not None
        return request

    async def set_card(self, request_id: int, card_event_id: str) -> None:
        await self._db.conn.execute(
            "UPDATE approval_requests SET card_event_id = ? WHERE id = ?",
            (card_event_id, request_id),
        )

    async def get(self, request_id: int) -> ApprovalRequest | None:
        async with self._db.conn.execute(
            "SELECT * FROM approval_requests WHERE id = ?", (request_id,)
        ) as cursor:
            row = await cursor.fetchone()
        return ApprovalRequest.of_row(row) if row else None

    async def by_card(self, card_event_id: str) -> ApprovalRequest | None:
        async with self._db.conn.execute(
            "SELECT * FROM approval_requests WHERE card_event_id = ?", (card_event_id,)
        ) as cursor:
            row = await cursor.fetchone()
        return ApprovalRequest.of_row(row) if row else None

    async def open_requests(self, room_id: str | None = None) -> list[ApprovalRequest]:
        return await self.in_state(OPEN, room_id)

    async def in_state(self, state: RequestState,
                       room_id: str | None = None) -> list[ApprovalRequest]:
        query = "SELECT * FROM approval_requests WHERE state = ?"
        params: tuple[object, ...] = (state.value,)
        if room_id is not None:
            query += " AND room_id = ?"
            params = (state.value, room_id)
        async with self._db.conn.execute(query + " ORDER BY id", params) as cursor:
            return [ApprovalRequest.of_row(row) for row in await cursor.fetchall()]

    async def transition(self, request_id: int, from_state: RequestState,
                         to_state: RequestState, outcome: str = "") -> bool:
        """Move a request between states; False if someone else already moved it."""
        closed = time.time() if to_state in CLOSED_STATES else None
        cursor = await self._db.conn.execute(
            "UPDATE approval_requests SET state = ?, outcome = ?, closed_at = ?"
            " WHERE id = ? AND state = ?",
            (to_state.value, outcome, closed, request_id, from_state.value),
        )
        return cursor.rowcount == 1

    async def mark_reminded(self, request_id: int) -> bool:
        """Claim the request's one reminder; False if it was already sent (or claimed)."""
        cursor = await self._db.conn.execute(
            "UPDATE approval_requests SET reminded_at = ? WHERE id = ? AND reminded_at IS NULL",
            (time.time(), request_id),
        )
        return cursor.rowcount == 1

    async def next_seq(self, event_id: str) -> int | None:
        """The receive order of a vote event; None when this event was already counted."""
        cursor = await self._db.conn.execute(
            "INSERT OR IGNORE INTO vote_sequence(event_id) VALUES(?)", (event_id,)
        )
        return int(cursor.lastrowid) if cursor.rowcount == 1 and cursor.lastrowid else None

    async def record_vote(self, request_id: int, vote: Vote) -> None:
        """One vote per user: a newer vote replaces the older one."""
        await self._db.conn.execute(
            "INSERT INTO approval_votes(request_id, voter, approve, event_id, reason, seq, via,"
            " choice) VALUES(?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(request_id, voter) DO UPDATE"
            " SET approve = excluded.approve, event_id = excluded.event_id,"
            " reason = excluded.reason, seq = excluded.seq, via = excluded.via,"
            " choice = excluded.choice WHERE excluded.seq > seq",
            (request_id, vote.voter, int(vote.approve is True), vote.event_id, vote.reason,
             vote.seq, vote.via, vote.choice.value),
        )

    async def retract(self, event_id: str) -> int | None:
        """A redacted reaction retracts the vote it cast (if it is still the voter's latest).
        Returns the request id affected."""
        async with self._db.conn.execute(
            "SELECT request_id FROM approval_votes WHERE event_id = ?", (event_id,)
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return None
        await self._db.conn.execute("DELETE FROM approval_votes WHERE event_id = ?", (event_id,))
        return int(row[0])

    async def votes(self, request_id: int) -> list[Vote]:
        async with self._db.conn.execute(
            "SELECT voter, choice, event_id, seq, reason, via FROM approval_votes"
            " WHERE request_id = ? ORDER BY seq", (request_id,)
        ) as cursor:
            rows = await cursor.fetchall()
        return [Vote(voter=UserID(r["voter"]), approve=CHOICE_APPROVE[Choice(r["choice"])],
                     event_id=EventID(r["event_id"]), seq=int(r["seq"]), reason=r["reason"],
                     via=r["via"]) for r in rows]

    async def drop_votes_by_event(self, request_id: int, event_ids: set[EventID]) -> None:
        for event_id in event_ids:
            await self._db.conn.execute(
                "DELETE FROM approval_votes WHERE request_id = ? AND event_id = ?",
                (request_id, event_id),
            )
