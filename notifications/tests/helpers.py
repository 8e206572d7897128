"""Helpers of the push tests: a recording push service, devices, and a worker to run."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from notifications.backends import DeviceBackends, PushMessage, PushOutcome, PushTarget
from notifications.models import Device
from notifications.worker import PushWorker


@dataclass
class Push:
    target: PushTarget
    message: PushMessage
    at: float = field(default_factory=time.monotonic)


class RecordingBackend:
    """A push service double: records every push; answers what `answer` says (delivered)."""

    def __init__(self, answer: Callable[[PushTarget, int], PushOutcome] | None = None) -> None:
        self.pushes: list[Push] = []
        self.answer = answer
        self.gate: asyncio.Event | None = None  # when set, pushes wait for it
        self.closed = False

    async def send(self, target: PushTarget, message: PushMessage) -> PushOutcome:
        self.pushes.append(Push(target, message))
        if self.gate is not None:
            await self.gate.wait()
        if self.answer is None:
            return PushOutcome("delivered")
        return self.answer(target, len([p for p in self.pushes if p.target == target]))

    async def aclose(self) -> None:
        self.closed = True

    def to(self, device: Device) -> list[dict[str, Any]]:
        return [p.message.payload for p in self.pushes if p.target.device_id == device.pk]


def make_device(user: Any, n: int = 1, kind: str = "apns") -> Device:
    address = f"{user.pk:032x}{n:032x}"
    if kind == "webpush":
        return Device.objects.create(
            user=user,
            kind=kind,
            address=f"https://push.example/{address}",
            keys={"p256dh": "x", "auth": "y"},
        )
    return Device.objects.create(user=user, kind=kind, address=address)


@contextlib.asynccontextmanager
async def running_worker(backend: Any, concurrency: int = 20) -> AsyncIterator[PushWorker]:
    worker = PushWorker(
        backends=DeviceBackends({"apns": backend, "webpush": backend}), concurrency=concurrency
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
