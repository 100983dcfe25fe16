"""ZeroMQ transport between actors and the learner (no torch here).

:class:`EpisodeReceiver` (learner, ROUTER on a thread) and :class:`EpisodeSender` (actor,
asyncio DEALER) exchange the messages of :mod:`thoughtmdp.wire` under credit-based flow
control; see :mod:`thoughtmdp.transport.receiver` for the protocol.
"""

from thoughtmdp.transport.pull import TransferFailed
from thoughtmdp.transport.receiver import EpisodeReceiver, ReceiverStats
from thoughtmdp.transport.security import CurveClient, CurveServer, check_bind_address
from thoughtmdp.transport.sender import EpisodeSender

__all__ = [
    "CurveClient",
    "CurveServer",
    "EpisodeReceiver",
    "EpisodeSender",
    "ReceiverStats",
    "TransferFailed",
    "check_bind_address",
]
