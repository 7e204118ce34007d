from tests.servers import wait_until  # noqa: F401

GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


async def test_github_webhook_is_stored(client, admin):
    created = await client.post("/api/v1/sources", headers=admin, json={
        "slug": "github", "verification": {"kind": "github", "secret": GITHUB_SECRET}})
    assert created.status_code == 201, created.text
    answer = await client.post("/in/github", content=b"Hello, World!", headers={
        "X-Hub-Signature-256": GITHUB_SIGNATURE, "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "abc"})
    assert answer.status_code == 202, answer.text
    event = (await client.get(f"/api/v1/events/{answer.json()['id']}", headers=admin)).json()
    assert event["body"] == "Hello, World!"
    assert event["event_type"] == "push"
    assert event["dedup_key"] == "abc"
