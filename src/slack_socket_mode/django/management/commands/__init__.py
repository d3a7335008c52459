"""The commands Django finds for slack_socket_mode.django: ``socketmode`` (see its module)."""
