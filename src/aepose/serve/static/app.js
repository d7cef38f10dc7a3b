// The page of `aepose serve`: a photo posted to /predict, or the webcam streamed over
// /stream, drawn with the skeletons the server found. Plain browser JavaScript, no build step.
"use strict";

const TOKEN_KEY = "aepose-token";
// Webcam frames are sent at most this many pixels wide or high: the model works at a few
// hundred pixels, and a smaller JPEG crosses the network and decodes sooner.
const MAX_SIDE = 640;
// A frame whose reply has not come after this long no longer holds the next one back (the
// server answers every frame it keeps; this only covers a reply lost with a reconnect).
const REPLY_TIMEOUT_MS = 5000;
// Frames per second are counted over the replies of this last stretch of time.
const FPS_WINDOW_MS = 2000;

const $ = (id) => document.getElementById(id);

// --- messages -------------------------------------------------------------------------------

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

/** The one line of an error reply: its JSON "error", else its first line of text. */
async function errorLine(response) {
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

function currentToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function authHeaders() {
  const token = currentToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function askToken(message, again) {
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
async function tokenRefused() {
  try {
    const response = await fetch("predict", { method: "POST", headers: authHeaders() });
    return response.status === 401;
  } catch (_) {
    return false;
  }
}

// --- readiness ------------------------------------------------------------------------------

async function watchReady() {
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

let skeleton = null; // [[a, b], ...] keypoint indices, once a /predict reply gave them

/** Asks /predict about a small grey picture for the skeleton. Null when it came, else the
 * failed reply's status and line. */
async function fetchSkeleton() {
  const probe = document.createElement("canvas");
  probe.width = 64;
  probe.height = 64;
  const context = probe.getContext("2d");
  context.fillStyle = "#808080";
  context.fillRect(0, 0, probe.width, probe.height);
  const body = await new Promise((resolve) => probe.toBlob(resolve, "image/png"));
  let response;
  try {
    response = await fetch("predict?overlay=false", {
      method: "POST", headers: { ...authHeaders(), "Content-Type": "image/png" }, body });
  } catch (error) {
    return { status: 0, line: `cannot reach the server: ${error.message}` };
  }
  if (!response.ok) return { status: response.status, line: await errorLine(response) };
  skeleton = (await response.json()).skeleton;
  return null;
}

// --- drawing --------------------------------------------------------------------------------

/** A colour per number (person index or track ID): hues a golden angle apart stay distinct
 * for neighbouring numbers. */
function colourOf(n) {
  return `hsl(${(n * 137.508) % 360}, 90%, 55%)`;
}

// People too weak to start a track (track ID -1) are drawn in this one colour.
const UNTRACKED = "#999";

function tracked(person) {
  return Number.isInteger(person.track_id) && person.track_id >= 0;
}

/** Draws people's skeletons on a canvas already holding their image. Keypoints are
 * [x, y, score] in pixel indices of that image (pixel i spans i..i+1 on the canvas);
 * score 0 means undetected, drawn neither as a dot nor as an end of a link. */
function drawPeople(context, people, links, colours) {
  const canvas = context.canvas;
  const width = Math.max(2, Math.round(Math.min(canvas.width, canvas.height) / 160));
  context.lineCap = "round";
  people.forEach((person, i) => {
    const points = person.keypoints.map(([x, y, score]) => [x + 0.5, y + 0.5, score]);
    context.strokeStyle = colours[i];
    context.fillStyle = colours[i];
    context.lineWidth = width;
    for (const [a, b] of links) {
      if (points[a][2] > 0 && points[b][2] > 0) {
        context.beginPath();
        context.moveTo(points[a][0], points[a][1]);
        context.lineTo(points[b][0], points[b][1]);
        context.stroke();
      }
    }
    for (const [x, y, score] of points) {
      if (score > 0) {
        context.beginPath();
        context.arc(x, y, width * 1.5, 0, 2 * Math.PI);
        context.fill();
      }
    }
  });
}

function showImage(canvas, image) {
  canvas.width = image.width;
  canvas.height = image.height;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  return context;
}

function swatch(colour, text) {
  const item = document.createElement("span");
  item.className = "swatch";
  item.style.backgroundColor = colour;
  item.textContent = text;
  return item;
}

// --- photo ----------------------------------------------------------------------------------

let photoRequest = 0; // replies to an older photo than the last one are dropped

function photoQuery(overlay) {
  const query = new URLSearchParams();
  const minScore = $("min-score").value.trim();
  const maxPeople = $("max-people").value.trim();
  if (minScore !== "") query.set("min_score", minScore);
  if (maxPeople !== "") query.set("max_people", maxPeople);
  if ($("flip").value !== "") query.set("flip", $("flip").value);
  // The browser draws the photo itself; the server's overlay is only needed for a format the
  // browser cannot show (the server reads more of them, TIFF for one).
  query.set("overlay", overlay ? "true" : "false");
  return query;
}

async function predictPhoto(file) {
  const request = ++photoRequest;
  clearError();
  $("people-count").textContent = "…";
  $("photo-time").textContent = "";
  let image = null;
  try {
    image = await createImageBitmap(file);
  } catch (_) {
    image = null;
  }
  const body = new FormData();
  body.append("image", file, file.name || "image");
  const started = performance.now();
  let response;
  try {
    response = await fetch(`predict?${photoQuery(image === null)}`,
                           { method: "POST", headers: authHeaders(), body });
  } catch (error) {
    if (request === photoRequest) {
      $("people-count").textContent = "–";
      showError(`cannot reach the server: ${error.message}`);
    }
    return;
  }
  if (request !== photoRequest) return;
  if (!response.ok) {
    $("people-count").textContent = "–";
    const line = await errorLine(response);
    if (response.status === 401) askToken(line, () => predictPhoto(file));
    else showError(`${file.name || "the photo"}: ${line}`);
    return;
  }
  const result = await response.json();
  skeleton = result.skeleton;
  if (request !== photoRequest) return;
  const elapsed = performance.now() - started;
  const colours = result.people.map((_, i) => colourOf(i));
  const canvas = $("photo-canvas");
  if (image !== null) {
    drawPeople(showImage(canvas, image), result.people, result.skeleton, colours);
  } else if (result.overlay) {
    showImage(canvas, await loadImage(result.overlay)); // drawn by the server already
  }
  listPeople(result.people, colours);
  $("people-count").textContent = String(result.people.length);
  $("photo-time").textContent = `in ${Math.round(elapsed)} ms`;
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("the server's overlay is not an image"));
    image.src = url;
  });
}

function listPeople(people, colours) {
  const list = $("people-list");
  list.replaceChildren();
  people.forEach((person, i) => {
    const detected = person.keypoints.filter((point) => point[2] > 0).length;
    const item = document.createElement("li");
    item.append(swatch(colours[i], String(i + 1)),
                ` score ${person.score.toFixed(2)}, ` +
                `${detected} of ${person.keypoints.length} keypoints`);
    list.append(item);
  });
}

function takeFiles(files) {
  if (files && files.length > 0) predictPhoto(files[0]);
}

$("photo-input").addEventListener("change", (event) => {
  takeFiles(event.target.files);
  event.target.value = ""; // picking the same file again is a new request
});

const dropZone = $("drop-zone");
dropZone.addEventListener("dragover", (event) => {
  event.preventDefault();
  dropZone.classList.add("over");
});
dropZone.addEventListener("dragleave", () => dropZone.classList.remove("over"));
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  dropZone.classList.remove("over");
  takeFiles(event.dataTransfer.files);
});
// A photo dropped beside the zone would make the browser leave the page to show it.
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => event.preventDefault());

// --- webcam ---------------------------------------------------------------------------------
// One frame in flight at a time: the next is taken once the last one's reply came (and not
// sooner than the chosen frame rate allows), so neither side builds a backlog.

const camera = {
  stream: null, // the MediaStream of getUserMedia
  socket: null, // the WebSocket to /stream
  frames: new Map(), // timestamp -> the canvas sent with it, until its reply is drawn
  inFlight: null, // timestamp of the frame sent and not answered yet
  lastSent: 0, // performance.now() of the last frame sent
  timer: null, // the next sendFrame
  watchdog: null, // REPLY_TIMEOUT_MS after the last frame sent
  replies: [], // performance.now() of recent replies, for the frame rate
  dropped: 0,
};

function frameInterval() {
  const fps = Math.min(60, Math.max(1, Number($("webcam-fps").value) || 15));
  return 1000 / fps;
}

function scheduleFrame() {
  clearTimeout(camera.timer);
  const wait = Math.max(0, camera.lastSent + frameInterval() - performance.now());
  camera.timer = setTimeout(sendFrame, wait);
}

async function startWebcam() {
  clearError();
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showError("this browser gives no webcam to this page (over plain http, browsers only " +
              "give one to pages from localhost or 127.0.0.1)");
    return;
  }
  $("webcam-start").disabled = true;
  try {
    camera.stream = await navigator.mediaDevices.getUserMedia(
      { video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
  } catch (error) {
    $("webcam-start").disabled = false;
    showError(`no webcam: ${error.message || error.name}`);
    return;
  }
  const video = $("webcam-video");
  video.srcObject = camera.stream;
  $("webcam-stop").disabled = false;
  try {
    await video.play();
  } catch (error) {
    showError(`the webcam does not play: ${error.message || error.name}`);
    stopWebcam();
    return;
  }
  camera.replies = [];
  camera.dropped = 0;
  connect();
}

async function connect() {
  if (skeleton === null) {
    const failure = await fetchSkeleton();
    if (!camera.stream) return; // stopped meanwhile
    if (failure !== null) {
      if (failure.status === 401) askToken(failure.line, () => { if (camera.stream) connect(); });
      else {
        showError(failure.line);
        stopWebcam();
      }
      return;
    }
  }
  openStream();
}

function openStream() {
  const url = new URL("stream", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (currentToken()) url.searchParams.set("token", currentToken());
  const socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  let opened = false;
  socket.onopen = () => {
    opened = true;
    scheduleFrame();
  };
  socket.onmessage = (event) => onReply(socket, event.data);
  socket.onclose = async (event) => {
    if (camera.socket !== socket) return; // closed by stopWebcam or replaced
    camera.socket = null;
    forgetFrames();
    // A browser sees no HTTP status of a refused handshake: ask the server about the token.
    if ((!opened || event.code === 1008) && await tokenRefused()) {
      askToken("the server refused the stream: enter its token", () => {
        if (camera.stream) connect();
      });
      return;
    }
    showError(`the stream closed: ${event.reason || `code ${event.code}`}`);
    stopWebcam();
  };
  camera.socket = socket;
}

function sendFrame() {
  const socket = camera.socket;
  const video = $("webcam-video");
  if (!socket || socket.readyState !== WebSocket.OPEN || camera.inFlight !== null) return;
  if (video.videoWidth === 0) { // no picture yet
    camera.timer = setTimeout(sendFrame, 50);
    return;
  }
  const scale = Math.min(1, MAX_SIDE / Math.max(video.videoWidth, video.videoHeight));
  const frame = document.createElement("canvas");
  frame.width = Math.round(video.videoWidth * scale);
  frame.height = Math.round(video.videoHeight * scale);
  frame.getContext("2d").drawImage(video, 0, 0, frame.width, frame.height);
  // Milliseconds since the epoch on the page's monotonic clock: the tracker's smoothing
  // takes differences of these.
  const timestamp = performance.timeOrigin + performance.now();
  camera.inFlight = timestamp;
  camera.lastSent = performance.now();
  camera.frames.set(timestamp, frame);
  frame.toBlob(async (blob) => {
    if (blob === null || camera.socket !== socket || socket.readyState !== WebSocket.OPEN) {
      release(timestamp);
      return;
    }
    // The message: the timestamp as a little-endian float64, then the JPEG.
    const message = new Uint8Array(8 + blob.size);
    new DataView(message.buffer).setFloat64(0, timestamp, true);
    message.set(new Uint8Array(await blob.arrayBuffer()), 8);
    socket.send(message.buffer);
    clearTimeout(camera.watchdog);
    camera.watchdog = setTimeout(() => release(timestamp), REPLY_TIMEOUT_MS);
  }, "image/jpeg", 0.85);
}

/** Lets the next frame go once the one sent at `timestamp` is answered or given up. */
function release(timestamp) {
  if (camera.inFlight !== timestamp) return;
  camera.inFlight = null;
  camera.frames.delete(timestamp);
  scheduleFrame();
}

function forgetFrames() {
  camera.inFlight = null;
  camera.frames.clear();
  clearTimeout(camera.timer);
  clearTimeout(camera.watchdog);
}

function onReply(socket, data) {
  if (camera.socket !== socket) return;
  let reply;
  try {
    reply = JSON.parse(data);
  } catch (_) {
    showError("the server sent a reply that is not JSON");
    return;
  }
  if (typeof reply.error === "string") {
    // Recoverable: the connection stays open. The frame in flight got this answer.
    showError(reply.error);
    if (camera.inFlight !== null) release(camera.inFlight);
    return;
  }
  clearError();
  const now = performance.now();
  const frame = camera.frames.get(reply.timestamp_ms);
  if (frame !== undefined) {
    const colours = reply.people.map(
      (person) => (tracked(person) ? colourOf(person.track_id) : UNTRACKED));
    drawPeople(showImage($("webcam-canvas"), frame), reply.people, skeleton, colours);
    $("latency").textContent = String(
      Math.round(performance.timeOrigin + now - reply.timestamp_ms));
  }
  showTracks(reply.people);
  camera.replies.push(now);
  while (camera.replies.length > 0 && camera.replies[0] < now - FPS_WINDOW_MS) {
    camera.replies.shift();
  }
  if (camera.replies.length >= 2) {
    const span = camera.replies[camera.replies.length - 1] - camera.replies[0];
    $("fps").textContent = ((camera.replies.length - 1) * 1000 / span).toFixed(1);
  }
  $("server-latency").textContent = String(Math.round(reply.latency_ms));
  camera.dropped += reply.dropped;
  $("dropped").textContent = String(camera.dropped);
  // Frames sent before this one were dropped by the server or are answered by now.
  for (const timestamp of camera.frames.keys()) {
    if (timestamp <= reply.timestamp_ms) camera.frames.delete(timestamp);
  }
  if (camera.inFlight !== null && camera.inFlight <= reply.timestamp_ms) {
    release(camera.inFlight);
  }
}

function showTracks(people) {
  const ids = people.filter(tracked).map((person) => person.track_id).sort((a, b) => a - b);
  const items = ids.map((id) => {
    const item = swatch(colourOf(id), String(id));
    item.dataset.trackId = String(id);
    return item;
  });
  $("tracks").replaceChildren(...items);
}

function stopWebcam() {
  const socket = camera.socket;
  camera.socket = null;
  if (socket) socket.close(1000, "stopped");
  forgetFrames();
  if (camera.stream) {
    for (const track of camera.stream.getTracks()) track.stop();
  }
  camera.stream = null;
  $("webcam-video").srcObject = null;
  $("webcam-start").disabled = false;
  $("webcam-stop").disabled = true;
}

$("webcam-start").addEventListener("click", startWebcam);
$("webcam-stop").addEventListener("click", stopWebcam);

watchReady();
