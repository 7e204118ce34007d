"""The composition of the apps: what each one lends the others, registered in one place
when Django starts (every process: web, dispatcher, management commands)."""

from django.apps import AppConfig


class RelayConfig(AppConfig):
    name = "relay"

    def ready(self) -> None:
        from dispatch.api import delivery_summaries
        from dispatch.metrics import scrape_gauges
        from dispatch.service import run_beside_dispatchers
        from hooks.api import show_deliveries_with
        from kernel.metrics import read_at_scrape
        from relay.retention import start_daily_purge

        show_deliveries_with(delivery_summaries)
        read_at_scrape(scrape_gauges)
        run_beside_dispatchers(start_daily_purge)
