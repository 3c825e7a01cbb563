# One image for every chatsite process: the web server (default CMD), the Celery
# worker and beat, and the one-shot migration. See compose.yaml.

# --- Dependencies: the locked set, without dev tools, into /app/.venv ----------------
FROM python:3.11-slim AS deps

# Same uv as the Makefile (UV_VERSION), so the lock is read the same way.
RUN pip install --no-cache-dir --disable-pip-version-check uv==0.13.9

ENV UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy

WORKDIR /app
# Only the dependency files, so this layer is rebuilt only when they change.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project


# --- Runtime ---------------------------------------------------------------------------
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/app/.venv/bin:$PATH \
    DATA_DIR=/app/data

RUN groupadd --system --gid 10001 chatsite \
    && useradd --system --uid 10001 --gid chatsite --home-dir /app \
        --shell /usr/sbin/nologin chatsite

WORKDIR /app
# Same base image and path as in `deps`, so the venv's python links stay valid.
COPY --from=deps /app/.venv /app/.venv
COPY . .

# Static files are collected into the image (served by whitenoise). Settings need a
# SECRET_KEY to load: this throwaway one exists for this command only and is not kept
# in the image; the real key comes from the environment at run time.
RUN SECRET_KEY=build-only-not-secret-collectstatic-placeholder \
        python manage.py collectstatic --noinput --verbosity 0 \
    && mkdir -p /app/data \
    && chown chatsite:chatsite /app/data

USER chatsite

EXPOSE 8000

# GET /healthz answers 200 when the database, the channel layer and Redis are up.
# Django checks the Host header against ALLOWED_HOSTS, so the probe names the first
# allowed host ("*" and a leading-dot wildcard are turned into a name that matches).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; h = (os.environ.get('ALLOWED_HOSTS', '').replace(',', ' ').split() or ['localhost'])[0].lstrip('.').replace('*', 'localhost'); u.urlopen(u.Request('http://127.0.0.1:8000/healthz', headers={'Host': h}), timeout=8)"]

# 48 MiB websocket messages (as `make run`): daphne's 1 MiB default closed the chat socket
# on any image over ~750 KB; the consumer itself refuses frames over 32 MiB.
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "--proxy-headers", \
     "--websocket-max-message-size", "50331648", "--websocket-max-frame-size", "50331648", \
     "chatsite.asgi:application"]
