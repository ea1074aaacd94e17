"""FastAPI routers: thin adapters from HTTP to :class:`lora_factory.core.services.Services`."""

from fastapi import Request

from lora_factory.core.services import Services


def services(request: Request) -> Services:
    """The workspace's services, created once by ``create_app``."""
    return request.app.state.services
