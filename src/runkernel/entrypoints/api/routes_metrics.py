"""``/metrics``: the kernel's Prometheus metrics (no authentication, like the probes:
scrapers carry no tenant key, and the figures are aggregate counts, not tenant data)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from runkernel.entrypoints.api.auth import KernelDep

# The classic text format, which every Prometheus version scrapes; spelled out because
# prometheus_client's CONTENT_TYPE_LATEST moved to a newer format older servers refuse.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics(kernel: KernelDep) -> Response:
    """Counters of the audit sweep and more, in Prometheus text format."""
    return Response(kernel.metrics.render(), media_type=CONTENT_TYPE)
