"""The studio's HTTP side (Starlette): the page, the JSON API, and the checks on everything a client sends.

  POST   /api/jobs                          multipart: content (file), style (file, repeatable), optional
                                            preset, size, style_weight_factor (repeatable), seed,
                                            iterations, preserve_colour -> 201 {"id": ...}
  POST   /api/jobs/{id}/members/{k}/carry   form: size -> 201 {"id": ...}: member k's run at another size
  GET    /api/jobs                          every job, newest first
  GET    /api/jobs/{id}                     {"state", "step", "total", "loss", "eta_s", "error", ...}
  GET    /api/jobs/{id}/events              server-sent events: the same, at every change
  GET    /api/jobs/{id}/image               the newest image as PNG (preview, then result), with its record
  GET    /api/jobs/{id}/members/{k}/image   a sweep member's
  DELETE /api/jobs/{id}                     cancel
  GET    /api/samples/{name}                the package's sample images (nst_jax.data)

Errors are JSON ``{"error": "one line"}`` with a 4xx status. Requests that start or cancel jobs
must come from the page's own origin (``Origin`` and ``Sec-Fetch-Site`` are checked: a page of
another site cannot start jobs through the user's browser). Request bodies are capped in bytes
(413 past :data:`MAX_UPLOAD_BYTES`, counted as they arrive, whatever ``Content-Length`` says).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import ipaddress
import json
import math
import re
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from nst_jax import data
from nst_jax.errors import NSTError, one_line
from nst_jax.studio._jobs import FINISHED, JOB_ID, MAX_PAINTINGS, Job, JobRequest, Studio, display_name

MAX_UPLOAD_BYTES = 32 * 2**20  # one request: a photo and its paintings
FIELDS = ("preset", "size", "style_weight_factor", "seed", "iterations", "preserve_colour")
SAMPLES = {"chelsea.png": "chelsea", "swirls.png": "swirls"}  # served name -> nst_jax.data file
EVENT_POLL_S = 0.1


class TooLarge(Exception):
    """The request body passed the byte cap."""


class BodyLimit:
    """ASGI middleware: a request body past ``limit`` bytes (as it arrives) raises :class:`TooLarge` in the
    handler reading it, which answers 413."""

    def __init__(self, app: Callable, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise TooLarge
            return message

        return await self.app(scope, limited, send)


# A Host header: an IPv6 literal in brackets, or a name or IPv4 address; then an optional port.
HOST_HEADER = re.compile(r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<name>[^\s:/\[\]@]+))(?::[0-9]{1,5})?")


def host_name(header: str | None) -> str | None:
    """The host a ``Host`` header names, lower case, without its port, an IPv6 address without its brackets
    and in its short form (``[0:0::1]:8000`` -> ``::1``); None for a missing or malformed header."""
    match = HOST_HEADER.fullmatch(header or "")
    if match is None:
        return None
    if match["ipv6"] is None:
        return match["name"].lower()
    try:
        return ipaddress.IPv6Address(match["ipv6"]).compressed
    except ValueError:
        return None


class TrustedHosts:
    """ASGI middleware: a request whose ``Host`` header names none of ``names`` (as :func:`host_name` reads
    it) is answered 400. Starlette's own middleware cannot be used: its versions before 0.47 cut the header
    at the first colon, so ``[::1]:8000`` read as ``[``."""

    def __init__(self, app: Callable, names: list[str]):
        self.app, self.names = app, {name.lower() for name in names}

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            header = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if host_name(header) not in self.names:
                return await error(400, "the Host header names no address this server answers to "
                                        f"({', '.join(sorted(self.names))})")(scope, receive, send)
        return await self.app(scope, receive, send)


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": one_line(message, 300)}, status_code=status)


def _same_origin(request: Request) -> bool:
    """Whether a request that changes state comes from this server's own page (or from no browser page at all:
    a command-line client sends neither header)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def _number(text: str, what: str, kind: type) -> Any:
    try:
        value = kind(text.strip())
    except ValueError:
        raise NSTError(f"{what} must be {'an integer' if kind is int else 'a number'}, got {text[:40]!r}") from None
    if kind is float and not math.isfinite(value):
        raise NSTError(f"{what} must be finite, got {text[:40]!r}")
    return value


def request_of(fields: dict[str, list[str]], paintings: int) -> JobRequest:
    """The job a form's text fields ask for, each checked (the defaults are :class:`JobRequest`'s).

    Raises:
        NSTError: For an unknown field, a repeated one, or a value out of its range.
    """
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise NSTError(f"unknown field {unknown[0][:40]!r} (fields: content, style, {', '.join(FIELDS)})")
    for name, values in fields.items():
        if name != "style_weight_factor" and len(values) > 1:
            raise NSTError(f"field {name!r} given {len(values)} times")
    one = {name: values[0] for name, values in fields.items() if name != "style_weight_factor"}
    kwargs: dict[str, Any] = {"paintings": paintings}
    for name in ("preset", "preserve_colour"):
        if name in one:
            kwargs[name] = one[name]
    for name in ("size", "seed", "iterations"):
        if name in one and one[name].strip():
            kwargs[name] = _number(one[name], name, int)
    factors = [f for text in fields.get("style_weight_factor", []) for f in text.replace(",", " ").split()]
    if factors:
        kwargs["factors"] = tuple(_number(f, "style_weight_factor", float) for f in factors)
    return JobRequest(**kwargs)


async def _form(request: Request):
    try:
        return await request.form(max_files=MAX_PAINTINGS + 1, max_fields=32)
    except HTTPException as err:  # malformed multipart, too many parts
        raise NSTError(f"malformed form: {err.detail}") from None


async def _job_form(form) -> tuple[JobRequest, bytes, list[bytes], dict[str, Any]]:
    """A job's form: its request, the photo's and paintings' bytes, and their names for display.

    Raises:
        NSTError: For a missing or unexpected part, or a bad setting.
    """
    fields: dict[str, list[str]] = {}
    uploads: dict[str, list[UploadFile]] = {"content": [], "style": []}
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            if name not in uploads:
                raise NSTError(f"unexpected file field {name[:40]!r} (files: content, style)")
            uploads[name].append(value)
        elif name in uploads:
            raise NSTError(f"field {name!r} must be a file")
        else:
            fields.setdefault(name, []).append(value)
    if len(uploads["content"]) != 1:
        raise NSTError("send one photo as the file field 'content'")
    if not 1 <= len(uploads["style"]) <= MAX_PAINTINGS:
        raise NSTError(f"send 1 to {MAX_PAINTINGS} paintings as the file field 'style'")
    job_request = request_of(fields, len(uploads["style"]))
    photo = await uploads["content"][0].read()
    paintings = [await f.read() for f in uploads["style"]]
    names = {"photo": display_name(uploads["content"][0].filename, "photo"),
             "paintings": [display_name(f.filename, f"painting {i + 1}") for i, f in enumerate(uploads["style"])]}
    return job_request, photo, paintings, names


class Api:
    """The request handlers, over one :class:`~nst_jax.studio._jobs.Studio`.

    Args:
        studio: The jobs.
        max_upload_bytes: The largest request body.
    """

    def __init__(self, studio: Studio, max_upload_bytes: int):
        self.studio, self.max_upload_bytes = studio, max_upload_bytes

    def lookup(self, request: Request) -> Job | None:
        """The job the path names, or None (ids are looked up, never used as paths)."""
        job_id = request.path_params["job_id"]
        return self.studio.jobs.get(job_id) if JOB_ID.fullmatch(job_id) else None

    async def form(self, request: Request):
        """The request's form, or the error response (403 from another origin, 413 past the cap, 400 malformed)."""
        if not _same_origin(request):
            return error(403, "jobs may be started or cancelled only from the studio's own page")
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_upload_bytes:
            return error(413, f"the request has {int(length)} bytes, more than the {self.max_upload_bytes} accepted")
        try:
            return await _form(request)
        except TooLarge:
            return error(413, f"the request has more than the {self.max_upload_bytes} bytes accepted")
        except NSTError as err:
            return error(400, str(err))

    async def page(self, request: Request) -> Response:
        html = importlib.resources.files("nst_jax.studio").joinpath("page.html").read_text(encoding="utf-8")
        return HTMLResponse(html, headers={"Cache-Control": "no-store", "Content-Security-Policy": (
            "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self' 'unsafe-inline'; frame-ancestors 'none'"), "X-Frame-Options": "DENY"})

    async def create(self, request: Request) -> Response:
        form = await self.form(request)
        if isinstance(form, Response):
            return form
        try:
            parsed = await _job_form(form)
        except NSTError as err:
            return error(400, str(err))
        finally:
            await form.close()
        try:
            job = await run_in_threadpool(self.studio.submit, *parsed)
        except NSTError as err:
            return error(400, str(err))
        return JSONResponse({"id": job.id}, status_code=201)

    async def carry(self, request: Request) -> Response:
        form = await self.form(request)
        if isinstance(form, Response):
            return form
        extra, size = sorted(set(form) - {"size"}), form.get("size")
        await form.close()
        job = self.lookup(request)
        if job is None:
            return error(404, "no such job")
        if extra:
            return error(400, f"unknown field {extra[0][:40]!r} (fields: size)")
        try:
            size = _number(size if isinstance(size, str) else "", "size", int)
            job = await run_in_threadpool(self.studio.carry_on, job.id, request.path_params["member"], size)
        except KeyError:
            return error(404, "no such member")
        except NSTError as err:
            return error(400, str(err))
        return JSONResponse({"id": job.id}, status_code=201)

    async def listing(self, request: Request) -> Response:
        return JSONResponse([job.status() for job in self.studio.listed()])

    async def status(self, request: Request) -> Response:
        job = self.lookup(request)
        return error(404, "no such job") if job is None else JSONResponse(job.status())

    async def cancel(self, request: Request) -> Response:
        if not _same_origin(request):
            return error(403, "jobs may be started or cancelled only from the studio's own page")
        job = self.lookup(request)
        return error(404, "no such job") if job is None else JSONResponse(self.studio.cancel(job.id).status())

    async def events(self, request: Request) -> Response:
        job = self.lookup(request)
        if job is None:
            return error(404, "no such job")

        async def stream():
            seen = -1
            while True:
                if job.version != seen:
                    seen = job.version
                    yield f"data: {json.dumps(job.status())}\n\n"
                    if job.state in FINISHED:
                        return
                if self.studio.stopping.is_set() or await request.is_disconnected():
                    return
                await asyncio.sleep(EVENT_POLL_S)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    async def image(self, request: Request) -> Response:
        job = self.lookup(request)
        if job is None:
            return error(404, "no such job")
        member = request.path_params.get("member")
        if member is None and job.sweep:
            return error(404, "a sweep's images are its members': /api/jobs/{id}/members/{k}/image")
        try:
            png = await run_in_threadpool(self.studio.image, job.id, member)
        except KeyError:
            return error(404, "no such member")
        return error(404, "no image yet") if png is None else Response(
            png, media_type="image/png", headers={"Cache-Control": "no-store"})

    async def sample(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in SAMPLES:
            return error(404, "no such sample")
        return Response(data.path(SAMPLES[name]).read_bytes(), media_type="image/png")

    def routes(self) -> list[Route]:
        return [
            Route("/", self.page),
            Route("/api/jobs", self.create, methods=["POST"]),
            Route("/api/jobs", self.listing, methods=["GET"]),
            Route("/api/jobs/{job_id}", self.status, methods=["GET"]),
            Route("/api/jobs/{job_id}", self.cancel, methods=["DELETE"]),
            Route("/api/jobs/{job_id}/events", self.events),
            Route("/api/jobs/{job_id}/image", self.image),
            Route("/api/jobs/{job_id}/members/{member:int}/image", self.image),
            Route("/api/jobs/{job_id}/members/{member:int}/carry", self.carry, methods=["POST"]),
            Route("/api/samples/{name}", self.sample),
        ]


async def _not_found(request: Request, exc: Exception) -> Response:
    return error(getattr(exc, "status_code", 404), getattr(exc, "detail", "not found"))


def create_app(studio: Studio, *, trusted_hosts: list[str] | None = None,
               max_upload_bytes: int = MAX_UPLOAD_BYTES) -> Starlette:
    """The studio's ASGI application over ``studio`` (whose worker it starts and stops with the app).

    Args:
        studio: The jobs.
        trusted_hosts: The hosts a ``Host`` header may name, with any port (None: any); a server on the
            loopback names only loopback hosts (``::1`` accepts ``[::1]:8765``), so that a page of another
            site cannot reach it by rebinding a name to 127.0.0.1.
        max_upload_bytes: The largest request body.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app):
        studio.start()
        yield
        await run_in_threadpool(studio.stop)

    middleware = [Middleware(BodyLimit, limit=max_upload_bytes)]
    if trusted_hosts is not None:
        middleware.insert(0, Middleware(TrustedHosts, names=trusted_hosts))
    return Starlette(routes=Api(studio, max_upload_bytes).routes(), middleware=middleware, lifespan=lifespan,
                     exception_handlers={404: _not_found, 405: _not_found})
