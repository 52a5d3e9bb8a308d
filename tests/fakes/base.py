"""What the fake servers share: an aiohttp app on its own thread and event loop (so a bot may run
in the test's process or in a subprocess), and waiting for what the bot did."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from aiohttp import web

Message = TypeVar("Message")


class ThreadedServer(Generic[Message]):
    thread_name = "fake-server"

    def __init__(self) -> None:
        self.port = 0
        self.sent: list[Message] = []  # the bot's messages, in order
        self._cond = threading.Condition()  # notified whenever the bot did something
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # --- for subclasses -------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def before_shutdown(self) -> None:
        """Release whatever would keep a request open (long polls, websockets)."""

    def last_seen(self) -> str:
        return repr(self.sent[-6:])

    # --- life -------------------------------------------------------------------------------------

    def start(self):  # type: ignore[no-untyped-def]
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name=self.thread_name, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"{self.thread_name} did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(10)
        self._loop.close()

    def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.add_routes(app)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._setup())
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()
        self._loop.run_forever()

    async def _setup(self) -> None:
        """Anything that must be created on the server's loop (events)."""

    async def _shutdown(self) -> None:
        await self.before_shutdown()
        assert self._runner is not None
        await self._runner.cleanup()

    def on_loop(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the server's loop (awaiting it if it returns a coroutine); its result."""

        async def call() -> Any:
            result = fn()
            return await result if asyncio.iscoroutine(result) else result

        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(10)

    def notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # --- waiting for the bot --------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[Message], bool], timeout: float = 90) -> Message:
        """The first message of the bot (in the order sent) that matches, waiting for it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for message in self.sent:
                    if predicate(message):
                        return message
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no matching bot message in {timeout}s; last ones: {self.last_seen()}")
                self._cond.wait(remaining)

    def wait_until(self, condition: Callable[[], bool], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"condition not met in {timeout}s; last ones: {self.last_seen()}")
                self._cond.wait(remaining)

    async def await_for(self, predicate: Callable[[Message], bool], timeout: float = 90) -> Message:
        """`wait_for` from async code: it waits on a thread, never on the event loop."""
        return await asyncio.to_thread(self.wait_for, predicate, timeout)

    async def await_until(self, condition: Callable[[], bool], timeout: float = 90) -> None:
        await asyncio.to_thread(self.wait_until, condition, timeout)
