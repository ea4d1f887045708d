"""uvicorn with the connection limits and the shutdown the settings ask for (``python -m app``).

uvicorn times out a connection only once it has had a response, never refuses a connection,
and on SIGTERM keeps accepting until its next 0.1 s tick, then resets what is still in the
kernel's accept queue and closes connections that have not sent their request yet: clients that
connected just after the signal got no answer at all. Here:

- :class:`GuardedProtocol`: a new connection is timed out like an idle keep-alive one
  (``keep_alive_timeout_s``); a request's line and headers must arrive within
  ``header_timeout_s`` of its first byte and its body within ``body_timeout_s`` of its headers
  (else 408 and close); a connection over ``max_connections`` gets 503 and is closed at once.
  The deadlines cost one timer only while a request is incomplete: none for a request that
  arrives in one piece. A response's head and its first body chunk leave in one write
  (:class:`OneWriteSend`), so a replica killed mid-answer never leaves a proxy holding a status
  line without its body (headers sent are an answer a proxy can no longer retry elsewhere).
- :class:`GracefulServer`: on SIGTERM/SIGINT the app's ``draining`` flag turns readiness 503 at
  once, the listener is closed at once after accepting what the kernel had already queued (so a
  new connection is either refused at connect or answered in full: on Linux a socket filter
  that drops SYNs first stops the kernel from starting new handshakes, see
  :func:`refuse_new_connections`), connections that have not
  sent a request yet get a short grace to send it, requests in flight finish, and whatever
  still runs after ``shutdown_timeout_s`` is cancelled. A watchdog ends the process if even that
  hangs.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import json
import logging
import os
import socket
import sys
import threading
import time
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import Settings
from app.memory import tune_malloc
from app.workers import run_workers

log = logging.getLogger("app.server")
FRESH_GRACE_S = 1.0
"""During shutdown, how long a connection that has sent nothing yet may still send its request."""
WATCHDOG_MARGIN_S = 5.0
STRAGGLERS_EARLY_S = 0.5
SWITCH_INTERVAL_S = 0.0005
"""How long a worker thread (parsing a large body, decoding media) may keep the GIL while the
event loop waits for it (Python's default, 5 ms, is paid at every loop wake-up: a small request
took 80 ms beside three large ones; at 0.5 ms it does not wait behind them)."""


def refuse_new_connections(sock: socket.socket) -> bool:
    """Stop the kernel from completing new handshakes on the listening ``sock`` (Linux).

    Closing a listener resets every connection in its accept queue, so a server that drains the
    queue and then closes it loses whatever connects in between: measured, 1 run in 40 of
    ``bench.stress.sigterm`` lost 1-4 connections that way (the client connected, sent its
    request and got a reset). With a classic BPF filter that drops every SYN, the kernel starts
    no new handshake (one under way still completes), so the queue can be drained to empty and
    closed with nothing lost. A client whose SYN was dropped retries it after
    about 1 s and is then refused (the listener is closed): a connect error that every client and
    proxy retries, never a request lost after it was sent. Returns ``False`` where the option is
    missing (not Linux), leaving the old behaviour.
    """
    if not sys.platform.startswith("linux"):
        return False
    program = _SockFprog(len(_DROP_SYN), _DROP_SYN)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(program))
    except OSError as exc:
        log.warning("could not stop new handshakes before closing the listener: %s", exc)
        return False
    return True


SO_ATTACH_FILTER = 26  # <asm-generic/socket.h>; the socket module does not export it


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


# A listener's filter sees each TCP segment from its header on: drop a segment whose SYN flag is
# set (byte 13, bit 0x02), keep the rest, so the final ACK of a handshake already under way still
# completes and its connection is queued (and then drained) rather than left half-open.
_DROP_SYN = (_SockFilter * 4)(
    _SockFilter(0x30, 0, 0, 13),  # BPF_LD | BPF_B | BPF_ABS: A = tcp[13] (the flags)
    _SockFilter(0x45, 0, 1, 0x02),  # BPF_JMP | BPF_JSET | BPF_K: A & SYN ? next : skip one
    _SockFilter(0x06, 0, 0, 0),  # BPF_RET | BPF_K: drop
    _SockFilter(0x06, 0, 0, 0xFFFFFFFF),  # BPF_RET | BPF_K: keep the whole segment
)


def _canned(status: str, message: str, extra: str = "") -> bytes:
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        f"{extra}connection: close\r\n\r\n"
    )
    return head.encode() + body


HEADERS_TIMEOUT = _canned("408 Request Timeout", "the request headers did not arrive in time")
TOO_MANY_CONNECTIONS = _canned(
    "503 Service Unavailable", "too many open connections; retry later", "retry-after: 1\r\n"
)


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with idle, header and connection-count limits (class attributes
    set by :func:`protocol_class`)."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_connections: int = 1000
    body_timeout_response: bytes = b""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._served = 0
        self._head_timer: asyncio.TimerHandle | None = None  # headers, then body, still arriving
        self._body_pending = False
        if len(self.connections) > self.max_connections:
            transport.write(TOO_MANY_CONNECTIONS)
            transport.close()
            return
        # A connection that never sends a request is as idle as a keep-alive one between requests.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._unset_keepalive_if_required()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        self._body_pending = True  # until on_message_complete; timed only if it needs more data
        super().on_headers_complete()
        if getattr(self.server_state, "draining", False) and self.cycle is not None:
            self.cycle.keep_alive = False  # answer in full, then close

        if self.cycle is not None:
            self.cycle.send = OneWriteSend(self.cycle)  # type: ignore[method-assign]

    def on_message_complete(self) -> None:
        self._body_pending = False
        self._cancel_head_timer()
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._body_pending and self._head_timer is None and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.body_timeout_s, self._body_timed_out)

    def on_response_complete(self) -> None:
        self._served += 1
        super().on_response_complete()

    def shutdown(self) -> None:
        """Close idle keep-alive connections; let one that has sent nothing yet send its request."""
        if self._head_timer is not None:
            return  # its request is arriving: answered with connection: close (draining)
        if self._served == 0 and self.cycle is None and not self.transport.is_closing():
            self._unset_keepalive_if_required()
            grace = min(self.timeout_keep_alive, FRESH_GRACE_S)
            self.timeout_keep_alive_task = self.loop.call_later(grace, self.timeout_keep_alive_handler)
            return
        super().shutdown()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.write(HEADERS_TIMEOUT)
            self.transport.close()

    def _body_timed_out(self) -> None:
        """408 unless the app has answered already; closing makes its ``receive`` say disconnect."""
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(self.body_timeout_response)
        self.transport.close()


class _HeldWrites:
    """A stand-in transport that keeps writes (and a close) until :meth:`flush`."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._chunks: list[bytes] = []
        self._close = False

    def write(self, data: bytes) -> None:
        self._chunks.append(bytes(data))

    def close(self) -> None:
        self._close = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def flush(self) -> None:
        if self._chunks:
            self._transport.write(b"".join(self._chunks))
        if self._close:
            self._transport.close()


class OneWriteSend:
    """The cycle's ASGI ``send``, holding ``http.response.start`` until the first body message so
    that uvicorn's two writes (head, then body) reach the socket as one."""

    def __init__(self, cycle: Any) -> None:
        self._cycle = cycle
        self._send = cycle.send  # the bound method of uvicorn's cycle
        self._start: Any = None  # None: nothing held; a message: held; False: head sent

    async def __call__(self, message: Any) -> None:
        if message["type"] == "http.response.start" and self._start is not False:
            self._start = message  # a later start (uvicorn's own 500) replaces one not yet sent
            return
        start, self._start = self._start, False
        if not start or message["type"] != "http.response.body":
            if start:
                await self._send(start)
            await self._send(message)
            return
        real = self._cycle.transport
        held = _HeldWrites(real)
        self._cycle.transport = held
        try:
            await self._send(start)
            await self._send(message)
        finally:
            self._cycle.transport = real
            held.flush()


def protocol_class(settings: Settings) -> type[GuardedProtocol]:
    """:class:`GuardedProtocol` with the limits of ``settings``."""
    message = f"the request body did not arrive within {settings.body_timeout_s:g} s"
    attrs = {
        "header_timeout_s": settings.header_timeout_s,
        "body_timeout_s": settings.body_timeout_s,
        "max_connections": settings.max_connections,
        "body_timeout_response": _canned("408 Request Timeout", message),
    }
    return type("FusionProtocol", (GuardedProtocol,), attrs)


class GracefulServer(uvicorn.Server):
    """uvicorn's server with an immediate, lossless stop of the listener on SIGTERM."""

    def __init__(
        self, config: uvicorn.Config, app: FastAPI, shutdown_timeout_s: float, shared_listener: bool = False
    ) -> None:
        """``shared_listener``: the socket is shared with sibling workers, whose supervisor stops
        its handshakes for all of them (one worker stopping alone must not stop the others)."""
        super().__init__(config)
        self.fusion_app = app
        self.shutdown_timeout_s = shutdown_timeout_s
        self.shared_listener = shared_listener
        self._listening_stopped = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._factory: Any = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self._loop = asyncio.get_running_loop()
        protocol: Any = self.config.http_protocol_class
        self._factory = functools.partial(
            protocol,
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        first = not self.should_exit
        super().handle_exit(sig, frame)
        if not first:
            return
        self.fusion_app.state.draining = True  # readiness answers 503 from now on
        self.server_state.draining = True  # type: ignore[attr-defined]
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop_listening)
        watchdog = threading.Timer(self.shutdown_timeout_s + WATCHDOG_MARGIN_S, _force_exit)
        watchdog.daemon = True
        watchdog.start()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown, but connections still open just before the timeout are closed first:
        a request still reading its body then sees a disconnect and ends quietly, instead of being
        cancelled with a traceback in the log."""
        # uvicorn's main loop can see the exit flag (its 0.1 s tick) before the event loop runs
        # the callback handle_exit queued; its shutdown would then close the listener with the
        # queue still in it (seen: 2 connections and a probe reset, 1 run in 150)
        if self._loop is not None:
            self._stop_listening()
        loop = asyncio.get_running_loop()
        stragglers = loop.call_later(max(self.shutdown_timeout_s - STRAGGLERS_EARLY_S, 0), self._close_all)
        try:
            await super().shutdown(sockets)
        finally:
            stragglers.cancel()

    def _close_all(self) -> None:
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None and not transport.is_closing():
                transport.close()

    def _stop_listening(self) -> None:
        """Close the listener, but first accept and serve what the kernel had already accepted.

        Closing a listening socket resets the connections still in its accept queue: their
        clients connected fine, sent a request and got a reset. A duplicate of the socket keeps
        the queue alive while the server stops polling it; it is drained, then closed.
        """
        assert self._loop is not None
        if self._listening_stopped:
            return
        self._listening_stopped = True
        for connection in self.server_state.connections:  # answers from now on end the connection
            cycle = getattr(connection, "cycle", None)
            if cycle is not None and not cycle.response_complete:
                cycle.keep_alive = False
        listeners = []
        for server in self.servers:
            for sock in server.sockets:
                listeners.append(socket.socket(fileno=os.dup(sock.fileno())))
                if not self.shared_listener:
                    refuse_new_connections(listeners[-1])
            server.close()
        accepted = 0
        for listener in listeners:
            listener.setblocking(False)
            # twice: a handshake under way when SYNs stopped completes within a loopback round
            # trip, so the second pass, 2 ms later, takes it in rather than closing it into a reset
            for pause in (0.002, 0.0):
                while True:
                    try:
                        conn, _ = listener.accept()
                    except OSError:
                        break
                    accepted += 1
                    self._loop.create_task(self._loop.connect_accepted_socket(self._factory, conn))
                time.sleep(pause)
            listener.close()
        log.info("stopped listening; %d queued connection(s) taken in to be answered", accepted)


def _force_exit() -> None:
    log.error("shutdown did not finish in time; exiting")
    os._exit(1)


def serve(app: FastAPI, settings: Settings) -> None:
    """Run ``app`` under uvicorn with the limits, timeouts and shutdown of ``settings``.

    With ``settings.workers`` above 1, the socket is bound here and that many forked worker
    processes serve it (:func:`app.workers.run_workers`), each one this same server with its own
    event loop and its own copy of the models (loaded after the fork, by the app's lifespan).
    """
    tune_malloc()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    app.state.draining = False
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        server_header=False,
        http=protocol_class(settings),
        timeout_keep_alive=settings.keep_alive_timeout_s,  # type: ignore[arg-type]
        timeout_graceful_shutdown=settings.shutdown_timeout_s,  # type: ignore[arg-type]
    )
    if settings.workers == 1:
        GracefulServer(config, app, settings.shutdown_timeout_s).run()
        return
    sock = config.bind_socket()
    run_workers(
        settings.workers,
        lambda: GracefulServer(config, app, settings.shutdown_timeout_s, shared_listener=True).run([sock]),
        on_stop=lambda: refuse_new_connections(sock),
    )
