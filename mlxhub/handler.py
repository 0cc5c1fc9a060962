"""/v1's ASGI handler: Django's, without the worker-thread hops Django spends on every request around the view.

Django's ``ASGIHandler.handle`` sends ``request_started`` with ``asend`` (each of its sync receivers through
``sync_to_async``) and ends with ``sync_to_async(response.close)()``: two or three hops to a thread that the
request's ThreadSensitiveContext starts for them and stops again, about a millisecond of a gateway call on a
small machine. Those receivers (reset_queries, close_old_connections, close_caches, reset_urlconf) touch only
the calling thread's state, and the event loop's thread holds no database connection (Django refuses sync
queries in async code), so here they run inline. /v1's views are async; what they do on the database still
goes through ``sync_to_async``. Otherwise ``handle`` is Django 5.2's.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.urls import set_script_prefix


class DataPlaneHandler(ASGIHandler):
    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            assert error_response is not None
            body_file.close()
            await self.send_response(error_response, send)
            error_response.close()
            return

        async def process_request(request: Any, send: Any) -> Any:
            response = await self.run_get_response(request)
            with contextlib.suppress(asyncio.CancelledError):  # the client left during send_response
                await self.send_response(response, send)
            return response

        # The disconnect listener first: it raises nothing that would keep process_request from being cancelled.
        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(process_request(request, send)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()  # the view may handle its cancellation
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        try:
            response = tasks[1].result()
        except asyncio.CancelledError:
            signals.request_finished.send(sender=self.__class__)
        else:
            response.close()
        body_file.close()
