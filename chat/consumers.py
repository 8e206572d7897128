"""The WebSocket endpoint /ws/chat/ (shared/PROTOCOL.md).

Thin by design: each client frame is validated here and handed to one service; the badge
and room frames that follow a change arrive through the channel layer (`chat.frames`).
A consumer handles one frame at a time, so nothing here waits on anything slower than the
service's own database and Redis work: fan-out and pushes happen elsewhere.
"""

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from chat import live, presence, services, unread
from chat.app_settings import app_settings
from chat.errors import BadRequest, ChatError, TooLarge
from chat.events import CLOSE_REVOKED, CloseConnections, room_group, user_group
from chat.revocation import still_authorized
from chat.selectors import MAX_ID, iso_utc
from chatproject import outlet
from chatproject.backpressure import SlowClientGuard

logger = logging.getLogger(__name__)

Frame = dict[str, Any]


def _int_field(frame: Frame, name: str) -> int:
    value = frame.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ID:
        raise BadRequest(f"{name} must be a positive integer id")
    return value


def _str_field(frame: Frame, name: str) -> str:
    value = frame.get(name)
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    return value


def _ref(frame: object) -> str | None:
    """What an error echoes so the client can tell which frame was refused."""
    if not isinstance(frame, dict):
        return None
    for name in ("clientMessageId", "type"):
        if isinstance(frame.get(name), str):
            return str(frame[name])
    return None


class ChatConsumer(AsyncJsonWebsocketConsumer):
    user_id: int
    viewing: set[int]
    last_version: int
    presence_task: "asyncio.Task[None] | None" = None
    slow_guard: SlowClientGuard | None = None
    # `?frames=combined`: one frame per room update and its badge (docs/protocol-extensions.md).
    frames_combined: bool = False

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close()  # before accept: the handshake is refused with HTTP 403
            return
        self.user_id = user.pk
        self.viewing = set()
        self.last_version = 0
        self.frames_combined = b"frames=combined" in self.scope.get("query_string", b"").split(b"&")
        # Join the user's group before reading the snapshot so no update falls in between;
        # updates older than the snapshot are dropped by version in `chat_frames`.
        await self.channel_layer.group_add(user_group(self.user_id), self.channel_name)
        if not await self._still_authorized():
            await self.channel_layer.group_discard(user_group(self.user_id), self.channel_name)
            await self.close()  # refused with HTTP 403, like any credential that fails
            return
        await self.accept()
        self.slow_guard = SlowClientGuard.for_consumer(self)
        snapshot = await database_sync_to_async(unread.unread_state)(self.user_id)
        self.last_version = max(self.last_version, snapshot["version"])
        await self.send_json(snapshot)
        if getattr(self.channel_layer, "hub_active", lambda: False)():
            # From now on the hub may write this connection's frames itself (chatproject/outlet.py).
            outlet.attach(self, self.channel_layer.connection_queue(self.channel_name))
        self.presence_task = asyncio.create_task(self._keep_presence())
        live.connection_opened(self)

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        outlet.wrote_elsewhere(self.channel_name)  # the outlet's reading of the buffer is stale
        await super().send(text_data=text_data, bytes_data=bytes_data, close=close)

    async def disconnect(self, code: int) -> None:
        if not hasattr(self, "user_id"):
            return
        live.connection_closed(self)
        outlet.detach(self.channel_name)
        if self.presence_task is not None:
            # Drop the reference too: a cancelled task keeps its CancelledError, whose traceback
            # holds `_keep_presence`'s frame and so `self`. Kept here, that is a reference cycle
            # (consumer -> task -> traceback -> consumer) that takes the whole connection (scope,
            # daphne's protocol, queues) with it until the collector's next *full* collection:
            # the soak's growing sawtooth (bench/REPORT.md). Without it, refcounting frees them.
            self.presence_task.cancel()
            self.presence_task = None
        await self.channel_layer.group_discard(user_group(self.user_id), self.channel_name)
        for room_id in list(self.viewing):
            await self.channel_layer.group_discard(room_group(room_id), self.channel_name)
        if self.viewing:
            await sync_to_async(presence.viewing_remove, thread_sensitive=False)(
                room_ids=list(self.viewing), user_id=self.user_id, channel_name=self.channel_name
            )

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        ref: str | None = None
        try:
            raw = text_data if text_data is not None else bytes_data or b""
            size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8"))
            if size > app_settings.MAX_FRAME_BYTES:
                raise TooLarge(f"frame is over {app_settings.MAX_FRAME_BYTES} bytes")
            try:
                frame = json.loads(raw)
            except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
                await self._send_error("bad_json", "frame is not valid JSON", None)
                return
            ref = _ref(frame)
            if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
                raise BadRequest('a frame is a JSON object with a string "type"')
            handler = self._handlers.get(frame["type"])
            if handler is None:
                await self._send_error("unknown_type", f"unknown frame type {ref!r}", ref)
                return
            await handler(self, frame)
        except ChatError as error:
            await self._send_error(error.code, error.message, ref)
        except Exception:
            logger.exception("frame from user %s failed", getattr(self, "user_id", None))
            await self._send_error("server_error", "the server could not handle this frame", ref)

    # --- client frames ------------------------------------------------------------------

    async def _join_room(self, frame: Frame) -> None:
        room_id = _int_field(frame, "roomId")
        await self.channel_layer.group_add(room_group(room_id), self.channel_name)
        try:
            await database_sync_to_async(services.room_view)(
                user_id=self.user_id, room_id=room_id, channel_name=self.channel_name
            )
        except Exception:
            if room_id not in self.viewing:
                await self.channel_layer.group_discard(room_group(room_id), self.channel_name)
            raise
        self.viewing.add(room_id)
        badge = await database_sync_to_async(unread.room_badge)(self.user_id, room_id)
        await self.send_json(
            {
                "type": "joined-room",
                "roomId": room_id,
                "unreadCount": badge.room_count,
                "totalUnreadCount": badge.total,
                "totalMentionCount": badge.total_mentions,
            }
        )

    async def _leave_room(self, frame: Frame) -> None:
        room_id = _int_field(frame, "roomId")
        await self._stop_viewing(room_id)
        await self.send_json({"type": "left-room", "roomId": room_id})

    async def _stop_viewing(self, room_id: int) -> None:
        if room_id in self.viewing:
            self.viewing.discard(room_id)
            await self.channel_layer.group_discard(room_group(room_id), self.channel_name)
            # Redis only: no reason to queue behind everyone's database work in the ORM thread.
            await sync_to_async(services.room_unview, thread_sensitive=False)(
                user_id=self.user_id, room_id=room_id, channel_name=self.channel_name
            )

    async def _send_message(self, frame: Frame) -> None:
        room_id = _int_field(frame, "roomId")
        body = _str_field(frame, "message")
        client_message_id = _str_field(frame, "clientMessageId")
        # One insert in its own transaction: it needs no shared thread (the 200 msg/s profile
        # showed that one thread 95 % busy, mostly waiting for the database).
        send = database_sync_to_async(
            services.message_send, thread_sensitive=not app_settings.SEND_CONCURRENTLY
        )
        sent = await send(
            sender_id=self.user_id, room_id=room_id, body=body, client_message_id=client_message_id
        )
        await self.send_json(
            {
                "type": "message-sent",
                "roomId": sent.message.room_id,
                "clientMessageId": client_message_id,
                "messageId": sent.message.pk,
                "createdAt": iso_utc(sent.message.created_at),
            }
        )

    async def _mark_read(self, frame: Frame) -> None:
        room_id = _int_field(frame, "roomId")
        message_id = _int_field(frame, "messageId")
        await database_sync_to_async(services.room_mark_read)(
            user_id=self.user_id, room_id=room_id, message_id=message_id
        )
        await self._send_room_badge(room_id)

    async def _send_room_badge(self, room_id: int) -> None:
        """The reply to mark-read and mark-unread: the room's count and the total after it."""
        badge = await database_sync_to_async(unread.room_badge)(self.user_id, room_id)
        # Version 0: Redis is away and the counts come from the database; the pointer is
        # saved, so answer with them under this connection's next version.
        version = badge.version or self.last_version + 1
        self.last_version = max(self.last_version, version)
        await self.send_json(
            {
                "type": "total-unread-count-updated",
                "totalUnreadCount": badge.total,
                "totalMentionCount": badge.total_mentions,
                "roomId": room_id,
                "roomUnreadCount": badge.room_count,
                "roomMentionCount": badge.room_mentions,
                "version": version,
            }
        )

    async def _mark_unread(self, frame: Frame) -> None:
        room_id = _int_field(frame, "roomId")
        message_id = _int_field(frame, "messageId")
        await database_sync_to_async(services.room_mark_unread)(
            user_id=self.user_id, room_id=room_id, message_id=message_id
        )
        await self._send_room_badge(room_id)

    async def _ping(self, frame: Frame) -> None:
        await self.send_json({"type": "pong"})

    _handlers: dict[str, Callable[["ChatConsumer", Frame], Awaitable[None]]] = {
        "join-room": _join_room,
        "leave-room": _leave_room,
        "send-message": _send_message,
        "mark-read": _mark_read,
        "mark-unread": _mark_unread,
        "ping": _ping,
    }

    # --- channel-layer events -----------------------------------------------------------

    async def chat_close(self, event: CloseConnections) -> None:
        """A credential was revoked (chat.revocation): close if it is the one this connection
        authenticated with."""
        if event["all"] or self._authenticated_by(event):
            await self.close(code=CLOSE_REVOKED)

    async def chat_left(self, event: dict[str, Any]) -> None:
        """The user left the room or was removed (chat.receivers): stop viewing it here, so no
        more of its frames arrive; the fresh `unread-state` without it follows on its own."""
        await self._stop_viewing(event["room_id"])

    def _authenticated_by(self, event: CloseConnections) -> bool:
        if self.scope.get("auth") == "token":
            return self.scope.get("token_id") in event["token_ids"]
        session_key = getattr(self.scope.get("session"), "session_key", None)
        return session_key is not None and session_key in event["session_keys"]

    async def _still_authorized(self) -> bool:
        # Checked after joining the user's group: a revocation committed before this check is
        # seen here, and one committed after it is published to a group we are already in.
        return bool(
            await database_sync_to_async(still_authorized)(
                user_id=self.user_id, token_id=self.scope.get("token_id")
            )
        )

    async def dispatch(self, message: dict[str, Any]) -> None:
        # channels closes stale database connections before every handler, a hop to the ORM
        # thread; forwarding frames touches no database, and a 1,000-member fan-out would
        # otherwise queue 1,000 such hops behind everyone's database work. A client frame's
        # handler reaches the ORM only through database_sync_to_async, which closes them itself
        # in the thread it runs in: the hop was ~10 % of the server's CPU at 200 msg/s.
        if message["type"] == "chat.frames":
            await self.chat_frames(message)
        elif message["type"] == "websocket.receive":
            await self.websocket_receive(message)
        else:
            await super().dispatch(message)

    async def chat_frames(self, event: dict[str, Any]) -> None:
        """Forward frames to the client, dropping badge updates older than what it has.

        Each frame waits until the client has read enough of what came before (see
        chatproject.backpressure); one that stays behind is closed with 4008.
        """
        frames = [frame for frame in event["frames"] if self.frame_is_fresh(frame)]
        if self.frames_combined:
            frames = outlet.combine(frames)
        for frame in frames:
            if not await self._writable():
                return
            await self.send_json(frame)

    def frame_is_fresh(self, frame: Frame) -> bool:
        """Whether the client still needs this frame (a badge update older than what it has
        is dropped); a fresh one moves the connection's version. Also used by the outlet."""
        kind, version = frame.get("type"), frame.get("version")
        if not isinstance(version, int):
            return True  # not a badge state; the client judges what it cannot use
        if kind == "total-unread-count-updated":
            if version <= self.last_version:
                return False
            self.last_version = version
        elif kind == "unread-state":
            # A snapshot at the version the client has still matters: it states every
            # room, where the update of that version stated one (the client applies it).
            if version < self.last_version:
                return False
            self.last_version = version
        return True

    async def _writable(self) -> bool:
        """Wait until the client can take another frame; False once it is being closed as slow."""
        if self.slow_guard is None:
            return True
        if self.slow_guard.closing:
            return False
        reason = await self.slow_guard.wait_until_writable()
        if reason is not None:
            await self.slow_guard.close_slow(self, reason)
            return False
        return True

    # --- helpers ------------------------------------------------------------------------

    async def _send_error(self, code: str, message: str, ref: str | None) -> None:
        await self.send_json({"type": "error", "code": code, "message": message, "ref": ref})

    async def _keep_presence(self) -> None:
        """Refresh this connection's viewing entries until it closes (see chat.presence)."""
        interval = max(1, app_settings.PRESENCE_TTL_SECONDS // 3)
        while True:
            await asyncio.sleep(interval)
            if not self.viewing:
                continue
            try:
                await sync_to_async(presence.viewing_add, thread_sensitive=False)(
                    room_ids=list(self.viewing),
                    user_id=self.user_id,
                    channel_name=self.channel_name,
                )
            except Exception:
                logger.warning("could not refresh presence of user %s", self.user_id)

    async def resync(self) -> None:
        """Called by chat.live when Redis came back: the frames published while it was away
        are lost, and a flush or restart lost this connection's presence entries too."""
        if self.viewing:
            await sync_to_async(presence.viewing_add, thread_sensitive=False)(
                room_ids=list(self.viewing), user_id=self.user_id, channel_name=self.channel_name
            )
        snapshot = await database_sync_to_async(unread.unread_state)(self.user_id)
        # Through the same slow-client guard as every other frame (a stalled client must not
        # get a snapshot piled on its buffer); one older than what the connection already has
        # is dropped, as the client would drop it.
        await self.chat_frames({"type": "chat.frames", "frames": [snapshot]})
