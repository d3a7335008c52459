"""The test project's settings: PostgreSQL from SLACK_SOCKET_MODE_POSTGRES_URL, the test's own database.

``SLACK_SOCKET_MODE_DJANGO_DB`` names the database (tests/test_django.py creates and drops it);
``SLACK_SOCKET_MODE_DJANGO_CONN_MAX_AGE`` and ``SLACK_SOCKET_MODE_DJANGO_HEALTH_CHECKS`` set
``CONN_MAX_AGE`` and ``CONN_HEALTH_CHECKS`` for the management command's subprocess, and
``SLACK_SOCKET_MODE_DJANGO_LOG=1`` logs the client's INFO on stderr there.
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

POSTGRES_URL = os.environ.get("SLACK_SOCKET_MODE_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
_url = urlsplit(POSTGRES_URL)

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["slack_socket_mode.django", "tests.django_project.notes"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("SLACK_SOCKET_MODE_DJANGO_DB", "slack_socket_mode_django"),
        "USER": unquote(_url.username or "postgres"),
        "PASSWORD": unquote(_url.password or ""),
        "HOST": _url.hostname or "127.0.0.1",
        "PORT": str(_url.port or 5432),
        "CONN_MAX_AGE": int(os.environ.get("SLACK_SOCKET_MODE_DJANGO_CONN_MAX_AGE", "0")),
        "CONN_HEALTH_CHECKS": os.environ.get("SLACK_SOCKET_MODE_DJANGO_HEALTH_CHECKS", "1") == "1",
        "OPTIONS": {"application_name": "slack_socket_mode-django-tests"},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
if os.environ.get("SLACK_SOCKET_MODE_DJANGO_LOG") == "1":  # the command's subprocess: the client's INFO on stderr
    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"stderr": {"class": "logging.StreamHandler"}},
        "loggers": {"slack_socket_mode": {"handlers": ["stderr"], "level": "INFO"}},
    }
