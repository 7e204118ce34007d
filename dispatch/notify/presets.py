"""Built-in templates for common provider events, used when an endpoint has none.

Each preset is an ordinary template (the same shape users write), so it renders through
the same sandbox and shows users how to write their own. `preset_for` picks one from the
event's headers and payload; anything unrecognised gets the generic one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Spec = dict[str, Any]

_REPO = "{{ payload.repository.full_name | default('GitHub') }}"

GITHUB: dict[str, Spec] = {
    "push": {
        "title": "[" + _REPO + "] {{ payload.commits | default([]) | length }} new commit"
                 "{{ '' if (payload.commits | default([]) | length) == 1 else 's' }} to "
                 "{{ payload.ref | default('') | replace('refs/heads/', '') }}"
                 " by {{ payload.pusher.name | default(payload.sender.login) }}",
        "text": "{% for c in (payload.commits | default([]))[:10] %}"
                "{{ c.id[:7] }} {{ c.message.split('\n')[0] }} ({{ c.author.name }})\n"
                "{% endfor %}"
                "{% if (payload.commits | default([]) | length) > 10 %}… and "
                "{{ (payload.commits | length) - 10 }} more{% endif %}",
        "fields": {"Repository": _REPO,
                   "Branch": "{{ payload.ref | default('') | replace('refs/heads/', '') }}"},
        "url": "{{ payload.compare | default('') }}",
    },
    "pull_request": {
        "title": "[" + _REPO + "] Pull request #{{ payload.number }} "
                 "{{ 'merged' if payload.action == 'closed' and payload.pull_request.merged "
                 "else payload.action }}: {{ payload.pull_request.title }}",
        "text": "{{ (payload.pull_request.body or '') | truncate(500) }}",
        "fields": {"Author": "{{ payload.pull_request.user.login }}",
                   "Branches": "{{ payload.pull_request.head.ref }} → "
                               "{{ payload.pull_request.base.ref }}",
                   "State": "{{ payload.pull_request.state }}"},
        "url": "{{ payload.pull_request.html_url | default('') }}",
    },
    "issues": {
        "title": "[" + _REPO + "] Issue #{{ payload.issue.number }} {{ payload.action }}: "
                 "{{ payload.issue.title }}",
        "text": "{{ (payload.issue.body or '') | truncate(500) }}",
        "fields": {"Author": "{{ payload.issue.user.login }}",
                   "By": "{{ payload.sender.login }}"},
        "url": "{{ payload.issue.html_url | default('') }}",
    },
    "release": {
        "title": "[" + _REPO + "] Release {{ payload.release.tag_name }} {{ payload.action }}",
        "text": "{{ payload.release.name or '' }}\n{{ (payload.release.body or '') | "
                "truncate(800) }}",
        "fields": {"Author": "{{ payload.release.author.login }}",
                   "Pre-release": "{{ 'yes' if payload.release.prerelease else '' }}"},
        "url": "{{ payload.release.html_url | default('') }}",
    },
    "workflow_run": {
        "title": "[" + _REPO + "] Workflow {{ payload.workflow_run.name }} "
                 "{{ payload.workflow_run.conclusion or payload.workflow_run.status }} on "
                 "{{ payload.workflow_run.head_branch }}",
        "text": "{{ payload.workflow_run.display_title | default('') }}",
        "fields": {"Event": "{{ payload.workflow_run.event }}",
                   "Commit": "{{ (payload.workflow_run.head_sha or '')[:7] }}",
                   "Run": "#{{ payload.workflow_run.run_number }}"},
        "url": "{{ payload.workflow_run.html_url | default('') }}",
    },
    "ping": {
        "title": "[" + _REPO + "] GitHub webhook connected",
        "text": "{{ payload.zen | default('') }}",
        "fields": {"Hook": "{{ payload.hook_id }}"},
    },
}

_AMOUNT = ("{% set o = payload.data.object %}"
           "{% set cents = o.amount_paid if o.amount_paid is defined else "
           "(o.amount if o.amount is defined else o.plan.amount) %}"
           "{% if cents is number %}{{ '%.2f' | format(cents / 100) }} "
           "{{ (o.currency or '') | upper }}{% endif %}")

STRIPE: dict[str, Spec] = {
    prefix: {
        "title": "Stripe {{ payload.type }}{% set a %}" + _AMOUNT + "{% endset %}"
                 "{% if a | trim %}: {{ a | trim }}{% endif %}",
        "text": "{{ payload.data.object.description or '' }}",
        "fields": {"Customer": "{{ payload.data.object.customer_email or "
                               "payload.data.object.customer or '' }}",
                   "Status": "{{ payload.data.object.status or '' }}",
                   "Object": "{{ payload.data.object.id }}",
                   "Mode": "{{ 'live' if payload.livemode else 'test' }}"},
        "url": "{{ payload.data.object.hosted_invoice_url or "
               "payload.data.object.receipt_url or '' }}",
    }
    for prefix in ("invoice.", "charge.", "payment_intent.", "customer.subscription.")
}

SHOPIFY_ORDERS: Spec = {
    "title": "Shopify order {{ payload.name or payload.id }} "
             "{% set topic = event.headers['x-shopify-topic'] | default('orders/updated') "
             "| replace('orders/', '') %}"
             "{{ {'create': 'created', 'paid': 'paid', 'updated': 'updated', "
             "'cancelled': 'cancelled', 'fulfilled': 'fulfilled', 'delete': 'deleted', "
             "'edited': 'edited', 'partially_fulfilled': 'partially fulfilled'}"
             ".get(topic, topic) }}: {{ payload.total_price }} {{ payload.currency }}",
    "text": "{% for item in (payload.line_items | default([]))[:10] %}"
            "{{ item.quantity }} × {{ item.title }}\n{% endfor %}",
    "fields": {"Customer": "{{ payload.email or payload.contact_email or '' }}",
               "Payment": "{{ payload.financial_status or '' }}",
               "Fulfilment": "{{ payload.fulfillment_status or '' }}"},
    "url": "{{ payload.order_status_url or '' }}",
}

ALERT: Spec = {
    "title": "{{ '✅ Resolved' if payload.state == 'resolved' else '🚨 Alert' }}: "
             "{{ payload.alert.name }}",
    "text": "{{ payload.message }}",
    "fields": {"Condition": "{{ payload.condition.type }}",
               "Subject": "{{ payload.subject }}",
               "At": "{{ payload.at }}"},
}

GENERIC: Spec = {
    "title": "{{ event.event_type or 'Event' }} from {{ event.source or 'Relay' }}",
    "text": "{{ body | truncate(1500) }}",
    "fields": {"Event": "{{ event.id }}", "Received": "{{ event.received_at }}"},
}


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return ""


def preset_for(event_type: str | None, headers: Mapping[str, str], payload: Any) -> Spec:
    """The built-in template for an event: GitHub (by `X-GitHub-Event`), Stripe (a body
    with `"object": "event"`), Shopify orders (`X-Shopify-Topic`), Relay's own alerts,
    else the generic one."""
    github = _header(headers, "x-github-event")
    if github in GITHUB:
        return GITHUB[github]
    if (event_type or "").startswith("relay.alert."):
        return ALERT
    if isinstance(payload, dict) and payload.get("object") == "event":
        kind = str(payload.get("type") or "")
        for prefix, spec in STRIPE.items():
            if kind.startswith(prefix):
                return spec
    if _header(headers, "x-shopify-topic").startswith("orders/"):
        return SHOPIFY_ORDERS
    return GENERIC
