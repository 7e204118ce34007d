"""Notification kinds: turning an event into a Slack, Discord, Teams or email message.

Everything here is pure (no I/O): the sender calls `render.render_request` and sends
what it returns, so a preview and a delivery are the same computation.
"""
