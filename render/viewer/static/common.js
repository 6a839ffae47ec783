// What every page shares: fetching the API (its errors are JSON with a message), small DOM helpers, number formats.

export async function getJSON(url, options = {}) {
  const response = await fetch(url, options);
  let body;
  try {
    body = await response.json();
  } catch {
    body = { error: `${url}: ${response.status} ${response.statusText}` };
  }
  if (!response.ok) throw new Error(body.error || `${url}: ${response.status}`);
  return body;
}

export function postJSON(url, data, method = "POST") {
  return getJSON(url, {
    method,
    headers: { "Content-Type": "application/json" },
    body: data === undefined ? undefined : JSON.stringify(data),
  });
}

// h("a", {href: "/"}, "text", child): an element with attributes (on* are listeners) and children.
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "class") element.className = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export function steps(n) {
  if (n === null || n === undefined) return "–";
  if (n >= 1e6) return `${(n / 1e6).toFixed(n >= 1e7 ? 0 : 2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(n >= 1e4 ? 0 : 1)}k`;
  return String(n);
}

export function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(n >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
}

export function number(x, digits = 2) {
  if (x === null || x === undefined) return "–";
  return Number.isInteger(x) ? String(x) : x.toFixed(digits);
}

export function showError(where, error) {
  where.replaceChildren(h("p", { class: "error" }, String(error.message || error)));
}

// Calls refresh() again and again: soon while it says work is under way (it returns true), rarely otherwise; a
// failed refresh shows its error in `problem` and the polling goes on.
export function poll(refresh, problem, busyMs, idleMs) {
  const again = async () => {
    let busy = false;
    try {
      busy = await refresh();
    } catch (error) {
      showError(problem, error);
    }
    setTimeout(again, busy ? busyMs : idleMs);
  };
  again();
}

export function runLink(id) { return `/runs/${encodeURIComponent(id)}`; }
export function episodeLink(id, index, step, overlay) {
  const query = new URLSearchParams();
  if (step !== undefined) query.set("step", step);
  if (overlay) query.set("overlay", overlay);
  const tail = query.toString();
  return `${runLink(id)}/episodes/${index}${tail ? "?" + tail : ""}`;
}

// The run id and episode index of a page's own URL (/runs/{id}/episodes/{i}).
export function pathParts() {
  const parts = location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  return { run: parts[1], episode: parts[3] === undefined ? undefined : Number(parts[3]) };
}
