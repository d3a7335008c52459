"""The delaying TCP relay, :class:`benchmarks.netem.Relay`, for tests (tests/test_netns.py, the shared ledger's).

It lives in ``benchmarks`` because the benchmarks use it too (``benchmarks.ledger_rtt``: a
Redis behind a round trip), as they do ``benchmarks.redis_server``.
"""

from benchmarks.netem import Relay

__all__ = ["Relay"]
