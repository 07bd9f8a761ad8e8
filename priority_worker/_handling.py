"""One delivery through a handler: decode, call (loop or thread pool), map the outcome.

Shared by the worker and by :mod:`priority_worker.testing`, so a handler's unit test exercises
exactly what the worker does with it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
from typing import TYPE_CHECKING

from ._core import Action, UndecodableError, attempts_of, decide, decode_body
from ._model import Handler, Message, Properties, RetryPolicy

if TYPE_CHECKING:
    from ._publisher import Publisher


async def handle(
    handler: Handler,
    *,
    body: bytes,
    queue: str,
    routing_key: str,
    exchange: str,
    redelivered: bool,
    properties: Properties,
    retry: RetryPolicy,
    executor: concurrent.futures.Executor | None = None,
    publisher: Publisher | None = None,
) -> tuple[Action, BaseException | None]:
    """Run ``handler`` on one delivery; returns what to do with it and what the handler raised.

    The body is decoded first: an undecodable one never reaches the handler. ``async`` handlers
    run on the loop, others in ``executor`` (the default executor when None).
    """
    attempts = attempts_of(properties.headers)
    error: BaseException | None = None
    try:
        data = decode_body(body, properties.content_type, properties.content_encoding)
    except UndecodableError as exc:
        return decide(exc, attempts, retry), None
    message = Message(body=body, queue=queue, routing_key=routing_key, exchange=exchange,
                      redelivered=redelivered, properties=properties, data=data,
                      attempts=attempts, publisher=publisher)
    try:
        if _is_async(handler):
            await handler(message)
        else:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(executor, handler, message)
            if inspect.isawaitable(result):
                await result
    except Exception as exc:
        error = exc
    return decide(error, attempts, retry), error


def _is_async(handler: Handler) -> bool:
    """``async def`` functions and objects with an ``async def __call__``."""
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None))  # noqa: B004 - the method, not callability
