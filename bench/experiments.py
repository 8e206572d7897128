"""Experiment knobs, off by default: what a product change would buy, measured before it lands.

`BENCH_FAST_FRAMES=1` serves /ws/chat/ with a ChatConsumer whose channel-layer `chat.frames`
events skip channels' `aclose_old_connections()`. channels' AsyncConsumer.dispatch awaits it
before every handler, and it runs in the one thread that does every consumer's ORM work, so a
fan-out to 1,000 members queues 1,000 hops into that thread behind the messages being saved,
for a handler that never touches the database.
"""

from typing import Any

from chat.consumers import ChatConsumer


class FastFramesChatConsumer(ChatConsumer):
    async def dispatch(self, message: dict[str, Any]) -> None:
        if message.get("type") == "chat.frames":
            await self.chat_frames(message)
            return
        await super().dispatch(message)
