"""The HTTP API: ``create_app(kernel)`` builds the FastAPI application over a kernel."""

from runkernel.entrypoints.api.app import create_app

__all__ = ["create_app"]
