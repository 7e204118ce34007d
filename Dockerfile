# Relay's image: one image, one command per service (compose.yaml sets `command:`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=relay.settings

WORKDIR /app

# Dependencies first (against empty packages), so a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir relay kernel hooks dispatch live \
    && touch relay/__init__.py kernel/__init__.py hooks/__init__.py dispatch/__init__.py live/__init__.py \
    && pip install . \
    && rm -rf relay kernel hooks dispatch live

COPY relay ./relay
COPY kernel ./kernel
COPY hooks ./hooks
COPY dispatch ./dispatch
COPY live ./live
COPY manage.py ./
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --no-create-home --home-dir /app relay \
    && mkdir -p /var/lib/relay/metrics /tmp/relay-data \
    && chown relay /var/lib/relay/metrics /tmp/relay-data

USER relay
EXPOSE 8000

# compose.yaml overrides this per service (migrate, web, dispatcher).
CMD ["uvicorn", "relay.asgi:application", "--host", "0.0.0.0", "--port", "8000", \
     "--http", "httptools", "--loop", "uvloop", "--proxy-headers", "--no-access-log"]
