"""One delivery through a handler: decode, call (loop or thread pool), map the outcome.

Shared by the worker and by :mod:`priority_worker.testing`, so a handler's unit test exercises
exactly what the worker does with it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect

from ._decoding import UndecodableError, decode_body
from ._model import FollowUpPublisher, Handler, Message, Properties, RetryPolicy
from ._outcomes import Ack, Action, attempts_of, decide


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
    publisher: FollowUpPublisher | None = None,
    is_async: bool | None = None,
) -> tuple[Action, BaseException | None]:
    """Run ``handler`` on one delivery; returns what to do with it and what the handler raised.

    The body is decoded first: an undecodable one never reaches the handler. ``async`` handlers
    run on the loop, others in ``executor`` (the default executor when None). ``is_async``:
    :func:`is_async_handler` of ``handler`` if the caller knows it already.
    """
    headers = properties.headers
    attempts = attempts_of(headers) if headers else 0
    error: BaseException | None = None
    ctype, cenc = properties.content_type, properties.content_encoding
    if cenc is None and (ctype is None or ctype == "application/octet-stream"):
        data: object = body  # nothing to decode (the common binary case)
    else:
        try:
            data = decode_body(body, ctype, cenc)
        except UndecodableError as exc:
            return decide(exc, attempts, retry), None
    message = Message(
        body, queue, routing_key, exchange, redelivered, properties, data, attempts, publisher
    )
    try:
        if is_async_handler(handler) if is_async is None else is_async:
            await handler(message)
        else:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(executor, handler, message)
            if inspect.isawaitable(result):
                await result
    except Exception as exc:
        error = exc
    if error is None:
        return _ACK, None
    return decide(error, attempts, retry), error


_ACK = Ack()


def is_async_handler(handler: Handler | None) -> bool:
    """``async def`` functions and objects with an ``async def __call__``."""
    call = getattr(handler, "__call__", None)  # noqa: B004 - the method itself, not callability
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)
