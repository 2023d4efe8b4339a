"""The peer frameworks of the HTTP benchmark, in their own pinned environment.

``runner`` makes that environment (bench/peers/.venv from requirements.lock) and serves each
peer app; ``flask_login_app`` and ``fastapi_users_app`` run inside it, not in Watchword's.
"""
