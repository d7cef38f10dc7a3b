// A photo, picked or dropped, posted to /predict and drawn with the people found.

import { colourOf, drawPeople, showImage, swatch } from "./draw.js";
import {
  $, askToken, authHeaders, clearError, errorLine, rememberSkeleton, showError,
} from "./server.js";

let photoRequest = 0; // replies to an older photo than the last one are dropped

function photoQuery() {
  const query = new URLSearchParams();
  const minScore = $("min-score").value.trim();
  const maxPeople = $("max-people").value.trim();
  if (minScore !== "") query.set("min_score", minScore);
  if (maxPeople !== "") query.set("max_people", maxPeople);
  if ($("flip").value !== "") query.set("flip", $("flip").value);
  return query; // no overlay: the page draws the people itself
}

async function predictPhoto(file) {
  const request = ++photoRequest;
  clearError();
  $("people-count").textContent = "…";
  $("photo-time").textContent = "";
  let image = null; // null: not a picture the browser reads (the server will say what it is)
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
    response = await fetch(`predict?${photoQuery()}`,
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
  rememberSkeleton(result.skeleton);
  if (request !== photoRequest) return;
  const elapsed = performance.now() - started;
  const colours = result.people.map((_, i) => colourOf(i));
  const canvas = $("photo-canvas");
  if (image !== null) {
    drawPeople(showImage(canvas, image), result.people, result.skeleton, colours);
  } else {
    canvas.width = 0;
    canvas.height = 0;
  }
  listPeople(result.people, colours);
  $("people-count").textContent = String(result.people.length);
  $("photo-time").textContent = `in ${Math.round(elapsed)} ms`;
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
