"""The mission page's aiohttp server: the page, its live WebSocket feed, downloaded files, commands.

Routes: ``/`` the page and ``/static/*`` its hand-written assets (shipped in this package, nothing
from the internet), ``/favicon.ico`` its icon (an SVG); ``/ws`` a WebSocket that first sends a
snapshot of the mission and then every message as it happens; ``/files/<path>`` previews,
pictures and MP4s under the mission's output folder (aiohttp's FileResponse answers Range requests,
which a ``<video>`` element uses); ``POST /api/command`` arm or disarm one board, only in operator
mode (the board's refusal comes back with its ``code``).

Bound to 127.0.0.1 by default. Any other address needs the access token printed at start: given once
as ``?token=...``, it is kept in a cookie. A command must come as JSON from the page's own origin (a
foreign page cannot send that without a CORS preflight, which this server never grants).

Example::

    with MissionServer(mission, host="127.0.0.1", port=0) as srv:
        print(srv.url)
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import secrets
import threading
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from camctl.common.lifecycle import Startable
from camctl.exc import CamctlError, ConfigError, RemoteError
from camctl.ground.mission.session import Mission

__all__ = ["MissionServer", "is_loopback"]

_COOKIE = "camctl_mission"
_STATIC = {"app.js": "text/javascript", "app.css": "text/css"}
# messages a page may lag behind before its socket is closed (it reconnects and resyncs)
_MAX_QUEUE = 5000
_CSP = ("default-src 'self'; img-src 'self'; media-src 'self'; connect-src 'self'; "
        "style-src 'self'; script-src 'self'; frame-ancestors 'none'")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _asset(name: str) -> bytes:
    return resources.files("camctl.ground.mission").joinpath("static", name).read_bytes()


class MissionServer(Startable):
    """Serves ``mission`` on its own thread and event loop. ``start()`` returns once it listens.

    ``token`` is required for any non-loopback ``host`` (made here when not given) and printed in
    :attr:`url`. ``close()`` is safe twice."""

    def __init__(self, mission: Mission, *, host: str = "127.0.0.1", port: int = 8080,
                 token: str | None = None) -> None:
        self.mission = mission
        self.host = host
        self.port = port
        self.token = token if token is not None else (None if is_loopback(host)
                                                      else secrets.token_urlsafe(18))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<MissionServer {self.url if self._started.is_set() else self.host}>"

    @property
    def url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        if self.host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="camctl-mission-http", daemon=True)
        self._thread.start()
        self._started.wait(30)
        if self._error is not None:
            err = self._error
            raise ConfigError(f"camctl mission cannot listen on {self.host}:{self.port}: "
                              f"{getattr(err, 'strerror', None) or err}")
        self.mission.start()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._listen())
        except BaseException as exc:  # reported by start() as one line
            self._error = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
            loop.close()

    async def _listen(self) -> None:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._page)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/favicon.ico", self._favicon)
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/files/{tail:.+}", self._file)
        app.router.add_post("/api/command", self._command)
        app.on_shutdown.append(self._shutdown)
        self._sockets: set[web.WebSocketResponse] = set()
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        addrs = runner.addresses
        if addrs:
            self.port = int(addrs[0][1])

    async def _shutdown(self, _app: web.Application) -> None:
        for ws in list(self._sockets):
            await ws.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.mission.close()
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    # -- handlers ----------------------------------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        set_cookie = False
        if self.token:
            given = request.query.get("token") or request.cookies.get(_COOKIE) or ""
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return web.Response(status=401, text="camctl mission: this page needs the access "
                                                     "token printed at start (?token=...)\n")
            set_cookie = "token" in request.query
        resp = await handler(request)
        if set_cookie and not resp.prepared:
            resp.set_cookie(_COOKIE, self.token, httponly=True, samesite="Strict")
        if not resp.prepared:
            resp.headers["Content-Security-Policy"] = _CSP
            resp.headers["X-Content-Type-Options"] = "nosniff"
            resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    async def _page(self, _request: web.Request) -> web.Response:
        return web.Response(body=_asset("index.html"), content_type="text/html", charset="utf-8")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _STATIC:
            raise web.HTTPNotFound()
        return web.Response(body=_asset(name), content_type=_STATIC[name], charset="utf-8")

    async def _favicon(self, _request: web.Request) -> web.Response:
        # the page's <link rel=icon> names this route with type image/svg+xml; a browser that asks
        # for /favicon.ico on its own gets the same SVG, not a 404 on every load
        return web.Response(body=_asset("favicon.svg"), content_type="image/svg+xml",
                            headers={"Cache-Control": "max-age=86400"})

    async def _file(self, request: web.Request) -> web.StreamResponse:
        root = self.mission.out.resolve()
        tail = request.match_info["tail"]
        path = (root / tail).resolve()
        if (not path.is_relative_to(root) or path != root.joinpath(*Path(tail).parts)
                or not path.is_file()):
            raise web.HTTPNotFound()  # outside the output folder, through a symlink, or missing
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            raise web.HTTPForbidden(text="foreign origin")
        ws = web.WebSocketResponse(heartbeat=10)
        await ws.prepare(request)
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[dict | None] = asyncio.Queue()

        def push(msg: dict) -> None:
            if q.qsize() > _MAX_QUEUE:
                msg = None  # too far behind: close; the page reconnects and gets a fresh snapshot
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(q.put_nowait, msg)

        unsubscribe = self.mission.listen(push)
        self._sockets.add(ws)
        reader = asyncio.ensure_future(self._read_until_closed(ws))
        try:
            for msg in self.mission.snapshot():
                await ws.send_str(json.dumps(msg))
            while not ws.closed:
                getter = asyncio.ensure_future(q.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    break
                msg = getter.result()
                if msg is None:
                    break
                await ws.send_str(json.dumps(msg))
        except (ConnectionError, RuntimeError):
            pass
        finally:
            unsubscribe()
            reader.cancel()
            self._sockets.discard(ws)
            await ws.close()
        return ws

    @staticmethod
    async def _read_until_closed(ws: web.WebSocketResponse) -> None:
        async for m in ws:  # the page sends nothing; this notices the close
            if m.type == WSMsgType.ERROR:
                break

    async def _command(self, request: web.Request) -> web.Response:
        origin = request.headers.get("Origin")
        if (origin != f"{request.scheme}://{request.host}"
                or request.content_type != "application/json"):
            return web.json_response(
                {"ok": False, "error": "commands come only from the mission page"}, status=403)
        try:
            body = await request.json()
            url, name = body["url"], body["name"]
            if not isinstance(url, str) or not isinstance(name, str):
                raise ValueError("url and name must be strings")
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"ok": False, "error": f"bad command request: {exc}"},
                                     status=400)
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(None, self.mission.command, url, name)
        except ConfigError as exc:
            # this server's own refusal: operator actions off, not arm/disarm...
            return web.json_response({"ok": False, "error": str(exc)}, status=403)
        except RemoteError as exc:
            # the board's refusal, with its code (FORBIDDEN: not an operator key)
            return web.json_response({"ok": False, "code": exc.code, "error": str(exc)}, status=502)
        except CamctlError as exc:
            return web.json_response({"ok": False, "code": "NO_ANSWER", "error": str(exc)},
                                     status=502)
        return web.json_response({"ok": True, "result": result})
