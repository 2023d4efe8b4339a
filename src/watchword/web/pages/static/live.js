// The page's realtime connection: a single-use ticket (cookie + CSRF header), then the
// socket. A terminal close for this session (revoked, account disabled) ends the page.

const ENDED_CODES = new Set([4003, 4005]);
const RETURN_DELAY_MS = 400;

export function meta(name) {
  const element = document.querySelector(`meta[name="${name}"]`);
  return element ? element.content : "";
}

let ended = false;

export function sessionEnded(reason) {
  if (ended) return;
  ended = true;
  const banner = document.getElementById("session-ended");
  const why = reason ? ` (${reason.replace(/^session_revoked:\s*/, "")})` : "";
  banner.textContent = `This device was signed out${why}. Returning to the sign-in page…`;
  banner.hidden = false;
  banner.focus();
  setTimeout(() => window.location.assign("/login"), RETURN_DELAY_MS);
}

async function ticket() {
  const response = await fetch("/v1/realtime/ticket", {
    method: "POST",
    credentials: "same-origin",
    headers: { "X-CSRF-Token": meta("csrf-token") },
  });
  if (response.status === 401) {
    sessionEnded("session ended");
    return null;
  }
  if (!response.ok) throw new Error(`ticket: ${response.status}`);
  return (await response.json()).ticket;
}

// Connect and stay connected. ``onWelcome(send)`` runs on every (re)connection;
// ``onEvent(message)`` gets every event.
export function connectLive({ onWelcome, onEvent, status }) {
  let attempt = 0;
  const say = (text) => {
    if (status) status.textContent = text;
  };

  const retry = () => {
    if (ended) return;
    attempt += 1;
    const delay = 250 + Math.random() * Math.min(10000, 250 * 2 ** attempt);
    say("Live updates paused, reconnecting…");
    setTimeout(connect, delay);
  };

  async function connect() {
    if (ended) return;
    let credential;
    try {
      credential = await ticket();
    } catch {
      retry();
      return;
    }
    if (credential === null) return;
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${scheme}//${window.location.host}/v1/realtime?ticket=${encodeURIComponent(credential)}`;
    const socket = new WebSocket(url, "watchword.v1");
    const queue = [];
    let pump = null;
    // Stay under the gateway's message rate: at most one message per 60 ms.
    const send = (message) => {
      queue.push(JSON.stringify(message));
      if (pump === null) {
        pump = setInterval(() => {
          const next = queue.shift();
          if (next === undefined || socket.readyState !== WebSocket.OPEN) {
            clearInterval(pump);
            pump = null;
            if (next !== undefined) queue.unshift(next);
            return;
          }
          socket.send(next);
        }, 60);
      }
    };
    socket.addEventListener("message", async (raw) => {
      const message = JSON.parse(raw.data);
      if (message.type === "welcome") {
        attempt = 0;
        say("Live");
        onWelcome(send);
      } else if (message.type === "event") {
        onEvent(message);
      } else if (message.type === "ping") {
        send({ type: "pong" });
      } else if (message.type === "refresh_required") {
        try {
          const fresh = await ticket();
          if (fresh) send({ type: "refresh", ticket: fresh });
        } catch {
          /* the deadline closes the socket and we reconnect */
        }
      }
    });
    socket.addEventListener("close", (event) => {
      if (pump !== null) clearInterval(pump);
      if (ENDED_CODES.has(event.code)) {
        sessionEnded(event.reason);
        return;
      }
      retry();
    });
  }

  connect();
}

// Replace the element ``id`` with the same element from a freshly rendered fragment.
export async function refreshFragment(url, id) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (response.redirected && new URL(response.url).pathname === "/login") {
    sessionEnded("session ended");
    return;
  }
  if (!response.ok) return;
  const html = await response.text();
  const fresh = new DOMParser().parseFromString(html, "text/html").getElementById(id);
  const current = document.getElementById(id);
  if (fresh && current) current.replaceWith(document.importNode(fresh, true));
}

export function debounce(fn, ms) {
  let timer = null;
  return () => {
    if (timer !== null) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      fn();
    }, ms);
  };
}
