"""``python -m benchmarks``: see :mod:`benchmarks.cli`.

This module stays free of imports at the top: child processes are spawned, and a spawned
child imports the parent's ``__main__`` module (as ``__mp_main__``) before anything else.
"""

if __name__ == "__main__":
    from benchmarks.cli import main

    raise SystemExit(main())
