"""A Django app for Socket Mode bots: database connections released around each listener run, and a command.

Add it to ``INSTALLED_APPS``::

    INSTALLED_APPS = [..., "slack_socket_mode.django"]

Once Django has loaded it (``django.setup()``, which ``manage.py`` runs), every
:class:`~slack_socket_mode.SocketModeClient` made afterwards, and so every
:class:`slack_socket_mode.bolt.SocketModeHandler`, calls ``django.db.close_old_connections()``
before and after each envelope's listeners, on the thread that runs them, as Django does around
each request (:class:`~slack_socket_mode.django.connections.CloseOldConnections`); a Bolt app's
own listener threads get the same through Bolt's ``listener_start_handler`` and
``listener_completion_handler``, without doubling Bolt's ``DjangoListenerStartHandler`` and
``DjangoListenerCompletionHandler`` when the app set them. It also adds the management command
``python manage.py socketmode APP`` (:mod:`slack_socket_mode.django.management.commands.socketmode`).

Needs the ``django`` extra: ``pip install "slack-socket-mode[django]"`` (Django 4.2 or later).
See docs/how-to/django.md.
"""
