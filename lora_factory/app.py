"""Builds the FastAPI application for a workspace. Importing this module loads no ML library."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from lora_factory import __version__
from lora_factory.core.errors import LoRAFactoryError, as_user_error
from lora_factory.core.services import Services
from lora_factory.routes import (
    catalog,
    exports,
    hide_server_paths,
    infer,
    jobs,
    openai_audio,
    openai_compat,
    openai_images,
    retry_after,
    seed,
    system,
)
from lora_factory.routes.guard import RequestGuard, build_config
from lora_factory.routes.plugin_extensions import mount_plugin_extensions
from lora_factory.routes.text_guard import LoneSurrogateGuard

STATIC_DIR = Path(__file__).parent / "static"
DOCS_ASSETS_DIR = Path(__file__).parent / "docs_assets"


def error_response(code: str, message_en: str, message_ja: str, status: int, detail: object = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message_en, "message_ja": message_ja, "detail": detail}},
                        status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LoRAFactoryError)
    async def _lf_error(request: Request, exc: LoRAFactoryError) -> JSONResponse:
        return JSONResponse(hide_server_paths(exc.to_dict(), request.app.state.services.workspace.home),
                            status_code=exc.http_status, headers=retry_after(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"), "reason": e.get("msg")}
                  for e in exc.errors()]
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return error_response("INVALID_JSON", "The request body is not valid JSON.",
                                  "リクエストの本文が正しい JSON ではありません。", 400, {"errors": errors})
        fields = ", ".join(e["field"] for e in errors if e["field"])
        return error_response("VALIDATION_ERROR", f"Invalid request: {fields or 'body'}. " + "; ".join(
            f"{e['field']}: {e['reason']}" for e in errors), f"入力が正しくありません: {fields or '本文'}", 422,
            {"errors": errors})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error_response("NOT_FOUND", "No such endpoint.", "そのエンドポイントはありません。", 404)
        if exc.status_code == 405:
            return error_response("METHOD_NOT_ALLOWED", "Method not allowed.", "そのメソッドは使えません。", 405)
        return error_response("HTTP_ERROR", str(exc.detail), str(exc.detail), exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        home = request.app.state.services.workspace.home
        known = as_user_error(exc)  # a full disk, a damaged database: said in words, not a traceback
        if known is not None:
            return JSONResponse(hide_server_paths(known.to_dict(), home), status_code=known.http_status)
        said = hide_server_paths(f"{type(exc).__name__}: {exc}", home)
        return error_response("INTERNAL_ERROR", f"Internal error: {said}", f"内部エラー: {said}", 500)


def create_app(home: Path | str | None = None, start_scheduler: bool = True, bind_host: str = "127.0.0.1",
               allowed_hosts: tuple[str, ...] = (), port: int | None = None) -> FastAPI:
    """The app for the workspace at ``home``; the scheduler thread starts with the server.

    ``bind_host`` / ``allowed_hosts``: the Host names the guard accepts (see ``core/guard.py``); bound
    beyond loopback, every API call needs the workspace's token.
    """
    services = Services(home)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            recovered = services.jobs.recover()
        except Exception as exc:
            known = as_user_error(exc)  # a full disk at start-up is said in words, never a raw sqlite3 error
            if known is None:
                raise
            print(f"エラー [{known.code}] {known.message_ja}\nError [{known.code}] {known.message_en}", file=sys.stderr)
            raise known from exc
        if recovered["interrupted"] or recovered["attached"]:
            print(f"[lora-factory] jobs re-attached: {recovered['attached']}, interrupted: {recovered['interrupted']}")
        services.startup_housekeeping()
        if start_scheduler:
            services.jobs.enable_warm_start()  # later workers forked warm, where that is safe (core/jobs/warm_start)
            services.jobs.start_background()
        yield
        services.close()  # the job workers go on: they are detached on purpose

    app = FastAPI(title="LoRA Factory", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Local LoRA / QLoRA workbench for text, image and audio models. "
                              "Errors: {\"error\": {\"code\", \"message\", \"message_ja\", \"detail\"}}.")
    app.state.services = services
    services.health.scheduler_expected = start_scheduler
    app.state.guard = build_config(services.workspace.home, bind_host, allowed_hosts, port)
    app.add_middleware(LoneSurrogateGuard)  # inside the guard: a refused caller's body is never read
    app.add_middleware(RequestGuard, config=app.state.guard)
    install_error_handlers(app)
    for module in (seed, jobs, catalog, exports, system, infer, openai_compat, openai_images, openai_audio):
        app.include_router(module.router)
    mount_plugin_extensions(app, services)  # after the host's routes, and before /static (its sub-folders)

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="LoRA Factory API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")

    app.mount("/docs-assets", StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")
    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False, response_model=None)
    def index() -> FileResponse | HTMLResponse:
        page = STATIC_DIR / "index.html"
        if page.exists():
            return FileResponse(page, headers={"Cache-Control": "no-cache"})
        return HTMLResponse("<h1>LoRA Factory</h1><p>The web UI is missing; see /docs.</p>")

    return app
