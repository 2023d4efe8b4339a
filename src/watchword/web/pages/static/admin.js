// "Online now", kept live from the presence channels of the users listed.
import { connectLive, debounce, meta, refreshFragment, sessionEnded } from "./live.js";

const sessionId = meta("session-id");
const panel = document.getElementById("online");
const watched = panel ? panel.dataset.watch.split(" ").filter(Boolean) : [];
const refreshOnline = debounce(() => refreshFragment("/admin/online", "online-list"), 100);

connectLive({
  status: document.getElementById("live-status"),
  onWelcome(send) {
    for (const id of watched) send({ type: "subscribe", channel: `presence:${id}` });
    refreshOnline();
  },
  onEvent(message) {
    const data = message.data || {};
    if (message.event === "security.session_revoked" && data.session_id === sessionId) {
      sessionEnded(data.reason);
      return;
    }
    if (message.event.startsWith("presence.")) refreshOnline();
  },
});
