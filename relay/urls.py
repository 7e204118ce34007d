"""Every HTTP route. This is the composition root: it mounts each app's views."""

from django.urls import path

from hooks.api import router as hooks_router
from hooks.ingest import ingest
from relay.api import api
from relay.health import healthz, readyz

api.add_router("/", hooks_router)

urlpatterns = [
    path("in/<str:slug>", ingest, name="ingest"),
    path("api/v1/", api.urls),
    path("healthz", healthz),
    path("readyz", readyz),
]
