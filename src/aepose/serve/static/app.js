// The page of `aepose serve`: a photo posted to /predict, or the webcam streamed over
// /stream, drawn with the skeletons the server found. Plain browser JavaScript modules, no
// build step: each section wires its own controls when imported.

import "./photo.js";
import "./webcam.js";
import { watchReady } from "./server.js";

watchReady();
