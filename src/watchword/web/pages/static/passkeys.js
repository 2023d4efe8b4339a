// Passkeys in the browser: add one on the account page, sign in with one on the sign-in page
// (no email typed: the authenticator offers its passkeys for this site), use one as the
// second step of a password sign-in, or confirm with one when the account page asks for a
// recent sign-in (step-up). Each calls the JSON API, as any other client would.
// The buttons stay hidden where the browser has no WebAuthn.

const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content || "";

function decode(text) {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

function encode(buffer) {
  const bytes = new Uint8Array(buffer);
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// The server's options (WebAuthn JSON, base64url) as the browser's API wants them.
function creationOptions(json) {
  return {
    ...json,
    challenge: decode(json.challenge),
    user: { ...json.user, id: decode(json.user.id) },
    excludeCredentials: (json.excludeCredentials || []).map((c) => ({ ...c, id: decode(c.id) })),
  };
}

function requestOptions(json) {
  return {
    ...json,
    challenge: decode(json.challenge),
    allowCredentials: (json.allowCredentials || []).map((c) => ({ ...c, id: decode(c.id) })),
  };
}

// The credential as JSON (WebAuthn Level 3 toJSON()), for browsers without it.
function credentialJSON(credential) {
  const response = credential.response;
  const out = {
    id: credential.id,
    rawId: encode(credential.rawId),
    type: credential.type,
    authenticatorAttachment: credential.authenticatorAttachment || undefined,
    clientExtensionResults: credential.getClientExtensionResults(),
    response: { clientDataJSON: encode(response.clientDataJSON) },
  };
  if (response.attestationObject) {
    out.response.attestationObject = encode(response.attestationObject);
    out.response.transports = response.getTransports ? response.getTransports() : [];
  } else {
    out.response.authenticatorData = encode(response.authenticatorData);
    out.response.signature = encode(response.signature);
    if (response.userHandle) out.response.userHandle = encode(response.userHandle);
  }
  return out;
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
    body: JSON.stringify(body || {}),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data.message || "Something went wrong: try again.");
    error.code = data.error;
    throw error;
  }
  return data;
}

function showError(error, where) {
  // The message goes next to the button that failed (the account page has two).
  const box = where?.querySelector('[role="alert"]') || document.getElementById("passkey-error");
  if (!box) return;
  // The user closing the browser's dialog is not an error worth a red message.
  box.textContent =
    error.name === "NotAllowedError"
      ? "The passkey was not used. Try again when you are ready."
      : error.message;
  box.hidden = false;
  box.focus?.();
}

function wire(selector, buttonId, action) {
  const box = document.querySelector(selector);
  const button = document.getElementById(buttonId);
  if (!box || !button || !window.PublicKeyCredential) return;
  box.hidden = false;
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await action(box);
    } catch (error) {
      showError(error, box);
    } finally {
      button.disabled = false;
    }
  });
}

wire("[data-passkey-add]", "passkey-add", async () => {
  const options = await post("/v1/me/passkeys/options");
  const credential = await navigator.credentials.create({ publicKey: creationOptions(options) });
  const name = document.getElementById("passkey-name")?.value.trim();
  await post("/v1/me/passkeys", { credential: credentialJSON(credential), name: name || undefined });
  window.location.assign("/account?done=passkey-added#factors");
});

wire("[data-passkey-sign-in]", "passkey-sign-in", async (box) => {
  const options = await post("/v1/auth/passkey/options");
  const credential = await navigator.credentials.get({ publicKey: requestOptions(options) });
  await post("/v1/auth/passkey", { credential: credentialJSON(credential), mode: "cookie" });
  window.location.assign(box.dataset.next || "/account");
});

wire("[data-passkey-second-factor]", "passkey-second-factor", async (box) => {
  const challenge = box.dataset.challenge;
  const options = await post("/v1/auth/mfa/passkey/options", { challenge });
  const credential = await navigator.credentials.get({ publicKey: requestOptions(options) });
  await post("/v1/auth/mfa", { challenge, credential: credentialJSON(credential) });
  window.location.assign(box.dataset.next || "/account");
});

wire("[data-passkey-reauth]", "passkey-reauth", async () => {
  const options = await post("/v1/auth/reauth/passkey/options");
  const credential = await navigator.credentials.get({ publicKey: requestOptions(options) });
  await post("/v1/auth/reauth", { credential: credentialJSON(credential) });
  window.location.assign("/account?done=reauth-passkey");
});
