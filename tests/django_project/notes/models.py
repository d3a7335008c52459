"""A Note per envelope a listener handled: which thread wrote it, on which PostgreSQL backend."""

from __future__ import annotations

from django.db import models


class Note(models.Model):
    """One envelope's effect: written by its listener before it acks."""

    envelope_id = models.CharField(max_length=64, unique=True)
    thread = models.CharField(max_length=200)
    backend_pid = models.IntegerField()

    class Meta:
        app_label = "notes"
