"""The dashboard's pages, mounted at /dashboard/ by relay/urls.py."""

from django.urls import path

from live import views

app_name = "live"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("sources", views.sources, name="sources"),
    path("notify", views.notify, name="notify"),
    path("login", views.login, name="login"),
    path("logout", views.logout, name="logout"),
]
