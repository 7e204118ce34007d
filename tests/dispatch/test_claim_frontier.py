"""Claims during a backlog start where the last full claim stopped in due order
(`Dispatcher.due_from`), so the rows earlier claims left (a full endpoint's backlog) are
not walked again by every claim; a claim from the head still takes whatever was left
behind (real PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dispatch import queue
from dispatch.models import Endpoint
from dispatch.queue import pooled
from tests.dispatch.conftest import make_endpoint, make_source

INTERLEAVED = """
INSERT INTO delivery (id, event_id, endpoint_id, status, attempts_count, retry_base,
                      next_attempt_at, created_at)
SELECT 'dlv_' || lpad(n::text, 26, '0'), 'evt_x', (ARRAY['ep_full', 'ep_ok'])[1 + n % 2],
       'pending', 0, 0, now() - interval '1 hour' + n * interval '1 second', now()
FROM generate_series(1, 40) AS n
"""


async def test_a_claim_from_a_due_time_leaves_out_the_rows_due_before_it(db_left_empty):
    for endpoint_id in ("ep_full", "ep_ok"):
        await Endpoint.create(id=endpoint_id, url="http://127.0.0.1/", secret_encrypted="x",
                              max_in_flight=1000)
    async with pooled() as connection:
        await connection.execute(INTERLEAVED)
        rows, _ = await queue.claim(connection, "me", 5, ["ep_full"], 15.0, 30.0)
        assert [row.id for row in rows] == [f"dlv_{n:026d}" for n in (1, 3, 5, 7, 9)]
        # The next claim starts at the last row leased: ep_full's rows 2..8 are not walked
        # again, and it takes the same rows a claim from the head would.
        frontier = rows[-1].due_at
        rows, _ = await queue.claim(connection, "me", 3, ["ep_full"], 15.0, 30.0,
                                    due_from=frontier)
        assert [row.id for row in rows] == [f"dlv_{n:026d}" for n in (11, 13, 15)]
        # Within allowances too; nothing due before the frontier is taken.
        frontier = rows[-1].due_at
        rows, _ = await queue.claim(connection, "me", 4, [], 15.0, 30.0, {"ep_ok": 1},
                                    due_from=frontier)
        assert all(row.due_at >= frontier for row in rows)
        assert [row.id for row in rows] == [f"dlv_{n:026d}" for n in (16, 17, 18, 20)]
        # From the head, ep_full's rows left behind are there.
        rows, _ = await queue.claim(connection, "me", 3, [], 15.0, 30.0)
        assert [row.id for row in rows] == [f"dlv_{n:026d}" for n in (2, 4, 6)]


async def test_a_claim_from_the_frontier_that_comes_back_short_is_followed_from_the_head(
        client, admin, sink):
    """The dispatcher's claims start an hour ahead of a due delivery (as if a backlog had
    been claimed past it while it was held elsewhere): that claim comes back short and
    asks for the next one at once, from the head, which takes it; by the clock, a claim
    from the head would only come FULL_WALK_EVERY later (made never here)."""
    from dispatch.worker import Dispatcher

    await make_source(client, admin, "shop")
    endpoint = await make_endpoint(client, admin, sink.url("/hook"))
    dispatcher = Dispatcher(concurrency=10)  # not started: its claims are made here
    dispatcher.due_from = datetime.now(UTC) + timedelta(hours=1)
    dispatcher.walked_all_at = float("inf")
    async with pooled() as connection:
        await connection.execute(
            "INSERT INTO event (id, received_at, method, query, headers, content_type, size,"
            " body) VALUES ('evt_behind', now(), 'POST', '', '{}', 'application/json', 2,"
            " '{}'::bytea)")
        await connection.execute(
            "INSERT INTO delivery (id, event_id, endpoint_id, status, attempts_count,"
            " retry_base, next_attempt_at, created_at) VALUES ('dlv_behind', 'evt_behind',"
            " $1, 'pending', 0, 0, now() - interval '1 hour', now())", endpoint["id"])
    claimed, _ = await dispatcher.claim(10)
    assert claimed == 0 and dispatcher.walk_again and dispatcher.due_from is None
    claimed, jobs = await dispatcher.claim(10)
    assert claimed == 1 and [job.id for job, _ in jobs] == ["dlv_behind"]
    assert not dispatcher.walk_again
