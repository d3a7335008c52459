"""The notes app: one model the bots' listeners write through the ORM."""
