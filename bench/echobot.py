"""The alternative: a minimal echo bot written directly on matrix-nio, answering `!ping` with a
`pong` notice that replies to the command. Run as its own process, like coopbot:

    python -m bench.echobot --homeserver URL --user @echo:localhost --password-file FILE

It joins every room it is invited to, ignores history (its first sync), and awaits each send in
nio's event callback: the obvious twenty lines anyone would write.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    InviteMemberEvent,
    LoginResponse,
    MatrixRoom,
    RoomMessageText,
    SyncResponse,
)

FILTER: dict[str, Any] = {"room": {"timeline": {"limit": 1000}}}


async def run(homeserver: str, user_id: str, password: str) -> None:
    client = AsyncClient(homeserver, user_id, config=AsyncClientConfig(
        encryption_enabled=False, max_limit_exceeded=5, max_timeouts=5, request_timeout=45))
    login = await client.login(password, device_name="echo bench")
    if not isinstance(login, LoginResponse):
        raise SystemExit(f"login failed: {login}")

    async def on_message(room: MatrixRoom, event: RoomMessageText) -> None:
        if event.sender == user_id or event.body.strip() != "!ping":
            return
        await client.room_send(room.room_id, "m.room.message", {
            "msgtype": "m.notice", "body": "pong",
            "m.relates_to": {"m.in_reply_to": {"event_id": event.event_id}},
        })

    async def on_invite(room: MatrixRoom, event: InviteMemberEvent) -> None:
        if event.state_key == user_id and event.membership == "invite":
            await client.join(room.room_id)

    first = await client.sync(timeout=0, full_state=True, sync_filter=FILTER)
    if not isinstance(first, SyncResponse):
        raise SystemExit(f"first sync failed: {first}")
    for room_id in first.rooms.invite:
        await client.join(room_id)
    client.add_event_callback(on_message, RoomMessageText)
    client.add_event_callback(on_invite, InviteMemberEvent)
    print("ready", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    syncing = asyncio.create_task(client.sync_forever(timeout=30_000, sync_filter=FILTER))
    waiting = asyncio.create_task(stop.wait())
    await asyncio.wait({syncing, waiting}, return_when=asyncio.FIRST_COMPLETED)
    syncing.cancel()
    waiting.cancel()
    await asyncio.gather(syncing, waiting, return_exceptions=True)
    await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--homeserver", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password-file", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(run(args.homeserver, args.user, args.password_file.read_text().strip()))


if __name__ == "__main__":
    main()
