"""``python -m slack_socket_mode``: the same as the ``slack-socket-mode`` command."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
