"""One socket's sending side: a bounded queue, the limits, and the close handshake."""
