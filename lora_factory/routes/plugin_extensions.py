"""Mounts what plugins add to the server: their routers (``register_routes``) under their prefix and
their UI folders (``register_ui``) under ``/static/plugins/<name>/``; ``GET /api/ui/modules`` lists the
ES modules the UI imports at start-up.

Mounted on the app itself, so the guard middleware (``guard.py``) stands before a plugin's routes
exactly as before the host's: a cross-site POST is refused, the token is needed beyond loopback.
Mounted after the host's routers: a plugin route never shadows one of the host's.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from lora_factory.core.plugin_host.extensions import PluginUI, collect_routes, collect_ui
from lora_factory.core.services import Services
from lora_factory.routes import services

router = APIRouter(tags=["plugins"])


@router.get("/api/ui/modules")
def ui_modules(svc: Services = Depends(services)) -> dict[str, Any]:
    """The front-end modules of the loaded plugins, in load order."""
    return {"modules": [{"plugin": ui.plugin, "url": ui.script, "static": ui.url, "modality": ui.modality}
                        for ui in svc.plugin_ui if ui.script]}


def mount_plugin_extensions(app: FastAPI, svc: Services) -> None:
    for routes in collect_routes(svc.plugins, svc.workspace):
        app.include_router(routes.router, prefix=routes.prefix, tags=[f"plugin: {routes.plugin}"])
    svc.plugin_ui = collect_ui(svc.plugins)
    for ui in svc.plugin_ui:
        _mount_static(app, ui)
    app.include_router(router)


def _mount_static(app: FastAPI, ui: PluginUI) -> None:
    app.mount(ui.url.rstrip("/"), StaticFiles(directory=ui.static_dir), name=f"plugin-static-{ui.plugin}")
