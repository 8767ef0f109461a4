"""Everything the bot sends to rooms: answers in threads, posts, edits, files, typing, and the
reading of a card's votes. nio's errors become MatrixError here.
"""

from __future__ import annotations

import io
import logging
import uuid
from typing import Any

import aiohttp
import nio
from nio.api import RelationshipType

from coopbot.errors import MatrixError
from coopbot.ids import EventID, RoomID
from coopbot.matrix import events
from coopbot.matrix.content import edit_of, in_thread, notice
from coopbot.matrix.limits import EDIT_BUDGET, fit_to_event
from coopbot.messages import IncomingReaction, ReplyTarget
from coopbot.replies import DEFAULT_PREFIX, Attachment, Reply, with_prefix

log = logging.getLogger(__name__)

TXN_NAMESPACE = uuid.UUID("6f1f1c5e-8a55-4c38-9e8e-3f8d2a1b7c01")


class RoomSender:
    def __init__(self, client: nio.AsyncClient, *, prefix: str = DEFAULT_PREFIX) -> None:
        self._client = client
        self._prefix = prefix

    async def send(
        self, room_id: RoomID, content: dict[str, Any], *, key: str,
        event_type: str = "m.room.message",
    ) -> EventID:
        # A transaction id derived from a stable key: a retried send (even after a restart)
        # is deduplicated by the homeserver instead of posted twice.
        txn = str(uuid.uuid5(TXN_NAMESPACE, f"{self._client.device_id}/{key}"))
        try:
            response = await self._client.room_send(
                room_id, event_type, content, tx_id=txn, ignore_unverified_devices=True
            )
        except (TimeoutError, aiohttp.ClientError, nio.LocalProtocolError) as error:
            raise MatrixError("could not send to the room", detail=repr(error)) from error
        if not isinstance(response, nio.RoomSendResponse):
            raise MatrixError("could not send to the room", detail=getattr(response, "message", ""))
        return EventID(response.event_id)

    async def reply(self, to: ReplyTarget, reply: Reply, *, key: str) -> EventID:
        reply = fit_to_event(with_prefix(reply, self._prefix))
        content = in_thread(notice(reply), to.reply_thread_root, to.event_id)
        event_id = await self.send(to.room_id, content, key=key)
        if reply.attachment is not None:
            file_content = await self._upload(to.room_id, reply.attachment)
            await self.send(to.room_id, in_thread(file_content, to.reply_thread_root, event_id),
                            key=f"{key}/file")
        return event_id

    async def _upload(self, room_id: RoomID, attachment: Attachment) -> dict[str, Any]:
        """Upload a file (encrypted when the room is) and return its m.file content."""
        room = self._client.rooms.get(room_id)
        encrypt = bool(room and room.encrypted)
        try:
            response, keys = await self._client.upload(
                io.BytesIO(attachment.data), content_type=attachment.mimetype,
                filename=attachment.filename, encrypt=encrypt, filesize=len(attachment.data),
            )
        except (TimeoutError, aiohttp.ClientError) as error:
            raise MatrixError("could not upload the file", detail=repr(error)) from error
        if not isinstance(response, nio.UploadResponse):
            raise MatrixError("could not upload the file", detail=getattr(response, "message", ""))
        content: dict[str, Any] = {
            "msgtype": "m.file",
            "body": attachment.filename,
            "filename": attachment.filename,
            "info": {"mimetype": attachment.mimetype, "size": len(attachment.data)},
        }
        if encrypt and keys:
            content["file"] = {"url": response.content_uri, **keys}
        else:
            content["url"] = response.content_uri
        return content

    async def post(self, room_id: RoomID, reply: Reply, *, key: str,
                   thread_root: EventID | None = None) -> EventID:
        content = notice(fit_to_event(with_prefix(reply, self._prefix), attach=False))
        if thread_root is not None:
            content = in_thread(content, thread_root, thread_root)
        return await self.send(room_id, content, key=key)

    async def edit(self, room_id: RoomID, event_id: EventID, reply: Reply) -> None:
        reply = fit_to_event(with_prefix(reply, self._prefix), EDIT_BUDGET, attach=False)
        await self.send(room_id, edit_of(event_id, reply), key=f"edit/{uuid.uuid4()}")

    async def reactions_to(self, room_id: RoomID, event_id: EventID) -> list[IncomingReaction]:
        """Every (unredacted) reaction on an event, from the homeserver's relations API: how
        votes cast while the bot was down are caught up after a restart."""
        found: list[IncomingReaction] = []
        try:
            async for event in self._client.room_get_event_relations(
                room_id, event_id, rel_type=RelationshipType.annotation,
            ):
                reaction = events.reaction(room_id, getattr(event, "source", None))
                if reaction is not None:
                    found.append(reaction)
        except (TimeoutError, aiohttp.ClientError, nio.LocalProtocolError,
                AttributeError) as error:
            # nio 0.26 raises AttributeError when the homeserver answers with an error.
            raise MatrixError("could not read the votes on a request card",
                              detail=repr(error)) from error
        return found

    async def typing(self, room_id: RoomID, active: bool) -> None:
        try:
            await self._client.room_typing(room_id, active, timeout=30_000)
        except (TimeoutError, aiohttp.ClientError) as error:
            log.debug("typing notice failed: %s", error)
