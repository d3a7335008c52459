"""A real Django project for tests/test_django.py: PostgreSQL, slack_socket_mode.django, a notes app, bots."""
