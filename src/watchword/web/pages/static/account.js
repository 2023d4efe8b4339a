// "Your devices", kept live: sign-ins and revocations of this user arrive on the user's
// channel, connections come and go on its presence channel.
import { connectLive, debounce, meta, refreshFragment, sessionEnded } from "./live.js";

const userId = meta("user-id");
const sessionId = meta("session-id");
const refreshDevices = debounce(() => refreshFragment("/account/devices", "device-list"), 50);

if (userId) {
  connectLive({
    status: document.getElementById("live-status"),
    onWelcome(send) {
      send({ type: "subscribe", channel: `presence:${userId}` });
      refreshDevices();
    },
    onEvent(message) {
      const data = message.data || {};
      if (message.event === "security.session_revoked" && data.session_id === sessionId) {
        sessionEnded(data.reason);
        return;
      }
      if (
        message.event === "security.sign_in" ||
        message.event === "security.session_revoked" ||
        message.event.startsWith("presence.")
      ) {
        refreshDevices();
      }
    },
  });
}
