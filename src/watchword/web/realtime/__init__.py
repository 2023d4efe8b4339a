"""The real-time gateway: authenticated WebSockets, fan-out, channels, presence.

Centrifuge's split: ``closecodes`` (every close and whether to reconnect), ``protocol`` (the
JSON messages), ``transport/connection`` (one socket: queue, limits, close), ``hub`` (this
node's sockets by user, session and channel), ``node`` (the bus and control side), ``client``
(one connection's message loop), ``credentials`` (handshake authenticators), ``tickets``,
``presence``, ``history`` and ``routes``.
"""
