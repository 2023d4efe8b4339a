from __future__ import annotations

from tests.realtime.conftest import Server
from tests.realtime.helpers import admin, connect_device, next_event, publish, register, sign_in


async def test_smoke(server: Server) -> None:
    email = await register(server)
    a = await sign_in(server, email)
    ws = await connect_device(server, a)
    boss = await admin(server)
    response = await publish(boss, user_id=a.user_id, event="hello", data={"x": 1})
    assert response.status_code == 202, response.text
    event = await next_event(ws, "hello")
    assert event["data"] == {"x": 1}
    await ws.close()
