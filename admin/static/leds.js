// The device's six LEDs drawn as the device draws them (see docs/led-map.png):
// led_0 (power) and led_1 (status) are round dots, led_2 square, led_3 rhombus,
// led_4 triangle, led_5 circle. An off LED (#000000) is drawn dark and outlined.

const SVG = "http://www.w3.org/2000/svg";

export const LED_NAMES = ["power", "status", "square", "rhombus", "triangle", "circle"];
export const OFF = "#000000";

function shape(index) {
  let el;
  if (index <= 1) {
    el = document.createElementNS(SVG, "circle");
    el.setAttribute("cx", "12");
    el.setAttribute("cy", "12");
    el.setAttribute("r", "6");
  } else if (index === 2) {
    el = document.createElementNS(SVG, "rect");
    el.setAttribute("x", "3");
    el.setAttribute("y", "3");
    el.setAttribute("width", "18");
    el.setAttribute("height", "18");
    el.setAttribute("rx", "1.5");
  } else if (index === 3) {
    el = document.createElementNS(SVG, "polygon");
    el.setAttribute("points", "12,1.5 22.5,12 12,22.5 1.5,12");
  } else if (index === 4) {
    el = document.createElementNS(SVG, "polygon");
    el.setAttribute("points", "12,2.5 22.5,21 1.5,21");
  } else {
    el = document.createElementNS(SVG, "circle");
    el.setAttribute("cx", "12");
    el.setAttribute("cy", "12");
    el.setAttribute("r", "10");
  }
  el.setAttribute("class", "led-shape");
  return el;
}

export function normalColor(value) {
  return typeof value === "string" && /^#[0-9a-fA-F]{6}$/.test(value) ? value.toLowerCase() : OFF;
}

/** One LED element: <span class="led" data-led="i" data-color="#rrggbb"><svg>…</svg></span>. */
export function createLed(index) {
  const wrap = document.createElement("span");
  wrap.className = `led led-${index}`;
  wrap.dataset.led = String(index);
  wrap.setAttribute("role", "img");
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.appendChild(shape(index));
  wrap.appendChild(svg);
  setLed(wrap, OFF);
  return wrap;
}

export function setLed(wrap, value) {
  const color = normalColor(value);
  if (wrap.dataset.color === color) return;
  const index = Number(wrap.dataset.led);
  const off = color === OFF;
  wrap.dataset.color = color;
  wrap.classList.toggle("off", off);
  wrap.style.setProperty("--led", off ? "" : color);
  const label = `led_${index} ${LED_NAMES[index]}: ${off ? "off" : color}`;
  wrap.setAttribute("aria-label", label);
  wrap.title = label;
}

/** A row of six LEDs; returns {el, leds: [six wrappers]}. */
export function createLedRow() {
  const el = document.createElement("div");
  el.className = "leds";
  const leds = [];
  for (let i = 0; i < 6; i += 1) {
    const led = createLed(i);
    leds.push(led);
    el.appendChild(led);
    if (i === 1) {
      const sep = document.createElement("span");
      sep.className = "led-sep";
      sep.setAttribute("aria-hidden", "true");
      el.appendChild(sep);
    }
  }
  return { el, leds };
}

export function setLedRow(leds, colors) {
  for (let i = 0; i < 6; i += 1) setLed(leds[i], Array.isArray(colors) ? colors[i] : OFF);
}
