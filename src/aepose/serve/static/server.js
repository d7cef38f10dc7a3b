// Talking to aepose serve: error lines, the token, readiness and the model's skeleton.

export const $ = (id) => document.getElementById(id);

const TOKEN_KEY = "aepose-token";

// --- messages -------------------------------------------------------------------------------

export function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

export function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

/** The one line of an error reply: its JSON "error", else its first line of text. */
export async function errorLine(response) {
  const text = await response.text();
  try {
    const line = JSON.parse(text).error;
    if (typeof line === "string" && line) return line;
  } catch (_) {
    // not JSON: a proxy's or the framework's own page
  }
  return text.split("\n", 1)[0].trim() || `HTTP ${response.status}`;
}

// --- token ----------------------------------------------------------------------------------
// Kept for the browser tab only (sessionStorage); sent as a Bearer header to HTTP endpoints
// and as ?token= to the WebSocket, where browsers cannot set headers.

let afterToken = null; // what to do again once a token has been entered

export function currentToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function authHeaders() {
  const token = currentToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

export function askToken(message, again) {
  afterToken = again;
  $("token-message").textContent = message;
  $("token-form").hidden = false;
  $("token-input").focus();
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
  $("token-form").hidden = true;
  const again = afterToken;
  afterToken = null;
  if (again) again();
});

/** Whether the server refuses this page's token. An empty POST /predict is answered 401
 * before anything is read when the token is wrong, else 400: no inference either way. */
export async function tokenRefused() {
  try {
    const response = await fetch("predict", { method: "POST", headers: authHeaders() });
    return response.status === 401;
  } catch (_) {
    return false;
  }
}

// --- readiness ------------------------------------------------------------------------------

export async function watchReady() {
  const status = $("server-status");
  try {
    const response = await fetch("readyz", { cache: "no-store" });
    if (response.ok) {
      status.textContent = "ready";
      status.dataset.ready = "true";
      return;
    }
    status.textContent = "loading the model…";
  } catch (_) {
    status.textContent = "server unreachable, retrying…";
  }
  setTimeout(watchReady, 2000);
}

// --- the model's skeleton ------------------------------------------------------------------
// Stream replies carry keypoints only; the links between them come with every /predict reply.

export let skeleton = null; // [[a, b], ...] keypoint indices, once a /predict reply gave them

export function rememberSkeleton(links) {
  skeleton = links;
}

/** Asks /predict about a small grey picture for the skeleton. Null when it came, else the
 * failed reply's status and line. */
export async function fetchSkeleton() {
  const probe = document.createElement("canvas");
  probe.width = 64;
  probe.height = 64;
  const context = probe.getContext("2d");
  context.fillStyle = "#808080";
  context.fillRect(0, 0, probe.width, probe.height);
  const body = await new Promise((resolve) => probe.toBlob(resolve, "image/png"));
  let response;
  try {
    response = await fetch("predict", {
      method: "POST", headers: { ...authHeaders(), "Content-Type": "image/png" }, body });
  } catch (error) {
    return { status: 0, line: `cannot reach the server: ${error.message}` };
  }
  if (!response.ok) return { status: response.status, line: await errorLine(response) };
  skeleton = (await response.json()).skeleton;
  return null;
}
