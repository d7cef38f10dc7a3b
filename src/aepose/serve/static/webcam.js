// The webcam streamed over /stream, drawn with tracked skeletons coloured by track ID.

import { colourOf, drawPeople, showImage, swatch, tracked, UNTRACKED } from "./draw.js";
import {
  $, askToken, clearError, currentToken, fetchSkeleton, showError, skeleton, tokenRefused,
} from "./server.js";

// Webcam frames are sent at most this many pixels wide or high: the model works at a few
// hundred pixels, and a smaller JPEG crosses the network and decodes sooner.
const MAX_SIDE = 640;
// A frame whose reply has not come after this long no longer holds the next one back (the
// server answers every frame it keeps; this only covers a reply lost with a reconnect).
const REPLY_TIMEOUT_MS = 5000;
// Frames per second are counted over the replies of this last stretch of time.
const FPS_WINDOW_MS = 2000;

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
