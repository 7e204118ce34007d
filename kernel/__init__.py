"""Shared infrastructure every app uses and that knows no app: database, ids, crypto, API
tokens, the API shell, the live bus publisher, request limits, logs, the metrics core, the
ASGI handler. Nothing here imports relay/, live/, dispatch/ or hooks/ (lint-imports checks).
"""
