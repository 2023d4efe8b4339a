"""HTTP and WebSocket surface: the app factory, the authenticator chain, the routes."""
