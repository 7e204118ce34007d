"""The `relay` command-line tool: a client of a running Relay's HTTP and WebSocket API."""

__version__ = "0.1.0"
