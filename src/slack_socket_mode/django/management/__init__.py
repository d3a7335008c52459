"""Django management commands of slack_socket_mode.django (``python manage.py socketmode APP``)."""
