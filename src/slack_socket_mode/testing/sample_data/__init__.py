"""Real Socket Mode messages, as JSON files: the samples ``slack_socket_mode.testing.samples`` loads."""
