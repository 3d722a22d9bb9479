"""Free TCP ports on 127.0.0.1, for everything that starts servers on loopback.

Used by `pangeo-cloud up`, the loopback Kubernetes control plane and the test
harnesses. All sockets stay bound until every port is chosen, so the ports
returned are distinct.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Collection


def free_ports(count: int, avoid: Collection[int] = ()) -> list[int]:
    """`count` distinct free ports on 127.0.0.1, none of them in `avoid`."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < count:
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            if port not in avoid:
                ports.append(port)
        return ports


def free_port() -> int:
    """One free port on 127.0.0.1."""
    return free_ports(1)[0]
