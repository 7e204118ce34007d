"""The dashboard's pages, mounted at /dashboard/ by relay/urls.py."""

from django.urls import path, re_path

from live import views

app_name = "live"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("sources", views.sources, name="sources"),
    path("notify", views.notify, name="notify"),
    path("login", views.login, name="login"),
    path("logout", views.logout, name="logout"),
    path("events", views.events, name="events"),
    path("endpoints/<str:endpoint_id>", views.endpoint, name="endpoint"),
    re_path(r"^(?P<rest>.+)$", views.not_found),
]
