from django.apps import AppConfig


class DispatchConfig(AppConfig):
    name = "dispatch"

    def ready(self) -> None:
        from dispatch.api import delivery_summaries
        from hooks import api as hooks_api

        hooks_api.delivery_summaries = delivery_summaries
