"""The benchmark suite: our Socket Mode client against slack_sdk's two clients and a floor.

Run it from the project root with ``python -m benchmarks`` (``--quick`` for a smoke run,
``--only SCENARIO``, ``--clients ours,floor``); see ``docs/performance.md``.
"""
