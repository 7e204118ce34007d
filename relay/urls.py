"""Every HTTP route. This is the composition root: it mounts each app's views."""

from django.urls import include, path

from dispatch.alerts_api import router as alerts_router
from dispatch.api import bulk_router as dispatch_bulk_router
from dispatch.api import router as dispatch_router
from dispatch.stats_api import router as stats_router
from hooks.api import router as hooks_router
from hooks.ingest import ingest
from kernel.api import api
from kernel.health import healthz, readyz
from kernel.metrics import metrics_view
from live import views as live_views

api.add_router("/", dispatch_bulk_router)
api.add_router("/", hooks_router)
api.add_router("/", dispatch_router)
api.add_router("/", stats_router)
api.add_router("/", alerts_router)

urlpatterns = [
    path("in/<str:slug>", ingest, name="ingest"),
    path("api/v1/", api.urls),
    path("healthz", healthz),
    path("readyz", readyz),
    path("metrics", metrics_view),
    path("dashboard/", include("live.urls")),
    path("", live_views.home),
]
