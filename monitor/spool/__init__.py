"""The agent's durable spool: every sample is stored here before it is shipped.

:class:`Spool` is the queue (append, peek, ack, ack_deferred) in one SQLite file, read in
timestamp order; past its row or byte budget an overflow policy (:data:`DROP_OLDEST`,
:data:`SPILL`) removes the oldest samples, counted; the budget also keeps within the file
system's free space, and a full disk never raises (:class:`Overflowed` says which limit hit).
The file also holds the agent's shipping state, which other processes read with
:func:`monitor.status.read_status`.
"""

from __future__ import annotations

from monitor.spool.overflow import DROP_OLDEST, SPILL, OnOverflow, Overflowed
from monitor.spool.queue import Row, Spool
from monitor.spool.schema import CACHE_KIB
from monitor.spool.state import HEARTBEAT_EVERY_MS

__all__ = [
    "CACHE_KIB",
    "DROP_OLDEST",
    "HEARTBEAT_EVERY_MS",
    "SPILL",
    "OnOverflow",
    "Overflowed",
    "Row",
    "Spool",
]
