// Drawing people on a canvas, and the colours that tell them apart.

/** A colour per number (person index or track ID): hues a golden angle apart stay distinct
 * for neighbouring numbers. */
export function colourOf(n) {
  return `hsl(${(n * 137.508) % 360}, 90%, 55%)`;
}

// People too weak to start a track (track ID -1) are drawn in this one colour.
export const UNTRACKED = "#999";

export function tracked(person) {
  return Number.isInteger(person.track_id) && person.track_id >= 0;
}

/** Draws people's skeletons on a canvas already holding their image. Keypoints are
 * [x, y, score] in pixel indices of that image (pixel i spans i..i+1 on the canvas);
 * score 0 means undetected, drawn neither as a dot nor as an end of a link. */
export function drawPeople(context, people, links, colours) {
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

export function showImage(canvas, image) {
  canvas.width = image.width;
  canvas.height = image.height;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  return context;
}

export function swatch(colour, text) {
  const item = document.createElement("span");
  item.className = "swatch";
  item.style.backgroundColor = colour;
  item.textContent = text;
  return item;
}
