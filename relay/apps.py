"""The composition of the apps: what each one lends the others, registered in one place
when Django starts (every process: web, dispatcher, management commands)."""

from __future__ import annotations

import asyncio

from django.apps import AppConfig


class RelayConfig(AppConfig):
    name = "relay"

    def ready(self) -> None:
        from dispatch.api import delivery_summaries
        from dispatch.metrics import scrape_gauges
        from dispatch.rollups import prune_expired as prune_rollups
        from dispatch.service import PooledConnection, run_beside_dispatchers
        from hooks.api import show_deliveries_with
        from kernel.metrics import read_at_scrape
        from kernel.partitions import start_upkeep
        from relay.retention import start_daily_purge

        def daily_purge(pooled: PooledConnection) -> asyncio.Task[None]:
            """The retention purge, then each app's own pruning (dispatch's rollups)."""
            return start_daily_purge(also=[prune_rollups])

        show_deliveries_with(delivery_summaries)
        read_at_scrape(scrape_gauges)
        run_beside_dispatchers(daily_purge)
        run_beside_dispatchers(start_upkeep)
