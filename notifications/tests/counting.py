"""A push service double for tests that run the worker as a real process.

Each push is recorded (RPUSH "<message id or badge>:<device id>" to PUSH_COUNT_KEY) the moment
it arrives, as a push service receives the request, then answered after PUSH_COUNT_DELAY
seconds: a worker killed in that wait has pushed what was recorded, and no more.
"""

import asyncio
import os

from redis.asyncio import Redis as AsyncRedis

from notifications.backends import PushMessage, PushOutcome, PushTarget


class CountingBackend:
    def __init__(self) -> None:
        self.redis = AsyncRedis.from_url(os.environ["REDIS_URL"])
        self.key = os.environ["PUSH_COUNT_KEY"]
        self.delay = float(os.environ.get("PUSH_COUNT_DELAY", "0"))

    async def send(self, target: PushTarget, message: PushMessage) -> PushOutcome:
        about = message.payload.get("messageId", "badge")
        await self.redis.rpush(self.key, f"{about}:{target.device_id}")
        await asyncio.sleep(self.delay)
        return PushOutcome("delivered")

    async def aclose(self) -> None:
        await self.redis.aclose()
