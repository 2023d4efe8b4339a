"""Watchword: authentication, sessions and tokens for APIs and real-time apps."""

__version__ = "0.1.0"
