"""What the tests' child processes (daemons, clients, benchmarks) start with.

Their output is compared byte for byte, so they must not inherit what would add to it or
change where they connect: ``$FTRACED_ADDRESS`` (a client would talk to some other
daemon), gRPC's logging and Python's warning switches (extra lines on stderr).
"""

from __future__ import annotations

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_NOT_INHERITED = ("FTRACED_ADDRESS", "GRPC_VERBOSITY", "GRPC_TRACE", "PYTHONWARNINGS",
                  "PYTHONDEVMODE")


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment with the repository on ``PYTHONPATH``, without the
    variables above, plus ``extra``."""
    env = {name: value for name, value in os.environ.items() if name not in _NOT_INHERITED}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (REPO, env.get("PYTHONPATH"))))
    env.update(extra)
    return env
