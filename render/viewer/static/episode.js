// The episode player: frames come from the API as lossless PNGs (exactly the video frame the renderer draws) and
// are drawn 1:1 onto the canvas. Playing keeps a few frames in flight ahead of the one shown; the overlay switches
// while playing (the frames after the switch are fetched with the new overlay). The URL always names the run, the
// episode, the step and the overlay shown, so a link opens the same frame.
import { episodeLink, getJSON, h, number, pathParts, runLink, showError } from "/static/common.js";

const FPS = 30; // the renderer's default video frame rate: 1x plays as the episode's video does
const AHEAD = 6; // frames requested ahead of the one shown while playing

const { run: runId, episode: index } = pathParts();
const query = new URLSearchParams(location.search);
const canvas = document.getElementById("frame");
const context = canvas.getContext("2d", { alpha: false });
const ui = Object.fromEntries(["first", "back", "play", "forward", "last", "speed", "scrubber", "overlays", "step-label",
  "rate", "reading", "episode-info", "neighbours", "title", "problem", "run-link"].map((id) => [id, document.getElementById(id)]));
const kinds = [...document.querySelectorAll("input[name=kind]")];

const state = { length: 0, step: 0, playing: false, shown: null, readings: null, actions: [], episode: null };
const frames = new Map(); // "overlay:step" -> Promise<ImageBitmap>
let generation = 0; // bumped on every seek or overlay change: answers for older requests are dropped

function overlay() {
  return ui.overlays.checked ? kinds.find((k) => k.checked).value : "raw";
}

function frameURL(step, kind) {
  return `/api/runs/${encodeURIComponent(runId)}/episodes/${index}/frames/${step}.png?overlay=${kind}`;
}

function load(step, kind) {
  const key = `${kind}:${step}`;
  if (!frames.has(key)) {
    const promise = fetch(frameURL(step, kind)).then(async (response) => {
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        throw new Error(body.error || `frame ${step}: ${response.status}`);
      }
      followRebuilt(response.headers.get("X-Rebuilt-Versions"));
      return createImageBitmap(await response.blob(), { colorSpaceConversion: "none", premultiplyAlpha: "none" });
    });
    promise.catch(() => frames.delete(key));
    frames.set(key, promise);
    while (frames.size > 48) frames.delete(frames.keys().next().value); // oldest first
  }
  return frames.get(key);
}

async function show(step, kind = overlay()) {
  const mine = generation;
  const bitmap = await load(step, kind);
  if (mine !== generation) return false;
  if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
  }
  context.drawImage(bitmap, 0, 0);
  state.shown = step;
  canvas.dataset.step = String(step);
  canvas.dataset.overlay = kind;
  ui.scrubber.value = String(step);
  ui["step-label"].textContent = `step ${step} / ${state.length}`;
  reading(step);
  remember(step, kind);
  return true;
}

let lastURL = 0;
function remember(step, kind) {
  const now = performance.now();
  if (state.playing && now - lastURL < 250) return;
  lastURL = now;
  history.replaceState(null, "", episodeLink(runId, index, step, kind));
}

async function seek(step) {
  step = Math.max(0, Math.min(state.length, step));
  generation++;
  state.step = step;
  ui.scrubber.value = String(step);
  ui["step-label"].textContent = `step ${step} / ${state.length}`;
  try {
    await show(step);
    ui.problem.replaceChildren();
  } catch (error) {
    showError(ui.problem, error);
  }
}

function setPlaying(playing) {
  state.playing = playing && state.step < state.length;
  ui.play.textContent = state.playing ? "Pause" : "Play";
  document.body.dataset.playing = state.playing ? "1" : "0";
  if (state.playing) play();
  else remember(state.shown ?? state.step, overlay());
}

async function play() {
  const mine = ++generation;
  let due = performance.now();
  let shownCount = 0;
  const started = performance.now();
  while (state.playing && mine === generation) {
    const kind = overlay();
    for (let k = state.step + 1; k <= Math.min(state.length, state.step + AHEAD); k++) load(k, kind);
    if (state.step >= state.length) break;
    const next = state.step + 1;
    let bitmapOk;
    try {
      bitmapOk = await show(next, kind);
    } catch (error) {
      showError(ui.problem, error);
      break;
    }
    if (!bitmapOk || mine !== generation) return;
    state.step = next;
    shownCount++;
    const seconds = (performance.now() - started) / 1000;
    if (seconds > 1) ui.rate.textContent = `${(shownCount / seconds).toFixed(0)} frames/s shown`;
    due += 1000 / (FPS * Number(ui.speed.value));
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    else due = performance.now(); // behind: play as fast as frames come, without bursting to catch up
  }
  if (mine === generation) setPlaying(false);
}

function reading(step) {
  if (!state.readings) return;
  const frame = state.readings.frames[step];
  if (!frame) return;
  const rows = [];
  if (frame.probabilities || frame.q_values) {
    const values = frame.probabilities || frame.q_values;
    const isQ = !frame.probabilities;
    const low = isQ ? Math.min(...values, 0) : 0;
    const high = isQ ? Math.max(...values) : 1;
    rows.push(h("div", { class: "bars", id: "policy" }, values.map((p, a) =>
      h("div", { class: `bar${a === frame.action ? " taken" : ""}`, "data-action": state.actions[a] },
        h("span", {}, state.actions[a] || `action ${a}`),
        h("span", { class: "track" }, h("span", { class: "fill", style: `display:block;width:${(100 * (p - low) / (high - low || 1)).toFixed(1)}%` })),
        h("span", { class: "num" }, isQ ? number(p, 3) : `${(100 * p).toFixed(1)}%`)))));
  }
  const lag = frame.checkpoint_version === null ? null : frame.policy_version - frame.checkpoint_version;
  rows.push(h("dl", { class: "kv" },
    h("dt", {}, "action taken"), h("dd", {}, frame.action === null ? "– (last frame)" : state.actions[frame.action]),
    h("dt", {}, "value"), h("dd", { id: "value" }, frame.value === null ? "–" : number(frame.value, 3)),
    h("dt", {}, "played by"), h("dd", {}, `policy v${frame.policy_version}`),
    h("dt", {}, "explained by"), h("dd", { id: "explained" }, frame.checkpoint_version === null ? "no checkpoint"
      : lag ? `checkpoint v${frame.checkpoint_version} (${lag} updates older)`
        : `v${frame.checkpoint_version}, the version that played`)));
  ui.reading.classList.remove("muted");
  ui.reading.replaceChildren(...rows);
}

async function start() {
  ui["run-link"].href = runLink(runId);
  const episodes = await getJSON(`/api/runs/${encodeURIComponent(runId)}/episodes`);
  const episode = episodes[index];
  if (!episode) throw new Error(`run ${runId} has no episode ${index}; its episodes are 0..${episodes.length - 1}`);
  state.episode = episode;
  state.length = episode.length;
  ui.scrubber.max = String(episode.length);
  const asked = query.get("overlay");
  if (asked === "raw") ui.overlays.checked = false;
  for (const kind of kinds) kind.checked = kind.value === (asked === "minimal" ? "minimal" : "full");
  document.title = `Episode ${index} · ${runId} · ale-replay viewer`;
  ui.title.textContent = `Episode ${index} · ${episode.tag === "eval" ? "evaluation" : "training"} · ${runId}`;
  ui["episode-info"].replaceChildren(
    h("dt", {}, "return"), h("dd", {}, episode.total_reward === null ? "unknown (unfinished)" : number(episode.total_reward)),
    h("dt", {}, "steps"), h("dd", {}, String(episode.length)),
    h("dt", {}, "policy versions"), h("dd", {}, `v${episode.policy_versions[0]} – v${episode.policy_versions[1]}`),
    h("dt", {}, "environment"), h("dd", {}, `env ${episode.env_index}, from step ${episode.start_step}`));
  ui.neighbours.replaceChildren(
    index > 0 ? h("a", { href: episodeLink(runId, index - 1) }, `◀ episode ${index - 1}`) : "", " ",
    index + 1 < episodes.length ? h("a", { href: episodeLink(runId, index + 1) }, `episode ${index + 1} ▶`) : "");
  const step = Math.max(0, Math.min(episode.length, Number(query.get("step")) || 0));
  await seek(step);
  document.body.dataset.ready = "1";
  loadReadings();
}

let readingsLoading = null;
function loadReadings() {
  readingsLoading = getJSON(`/api/runs/${encodeURIComponent(runId)}/episodes/${index}/readings`).then((body) => {
    state.readings = body;
    state.actions = body.actions;
    if (!body.explained) ui.reading.textContent = "This run has no checkpoints: no network to read.";
    else reading(state.shown ?? state.step);
  }).catch((error) => { ui.reading.textContent = String(error.message || error); })
    .finally(() => { readingsLoading = null; });
}

// A frame drawn with other rebuilt versions than the readings were (a render job rebuilt some meanwhile): the
// frames kept here are dropped and the readings asked for again, so the panel names the network the frame shows.
function followRebuilt(header) {
  if (header === null || !state.readings || readingsLoading) return;
  if (header === (state.readings.rebuilt || []).join(",")) return;
  for (const key of [...frames.keys()]) if (key.startsWith("full:")) frames.delete(key);
  loadReadings();
}

ui.play.addEventListener("click", () => setPlaying(!state.playing));
ui.forward.addEventListener("click", () => { setPlaying(false); seek(state.step + 1); });
ui.back.addEventListener("click", () => { setPlaying(false); seek(state.step - 1); });
ui.first.addEventListener("click", () => { setPlaying(false); seek(0); });
ui.last.addEventListener("click", () => { setPlaying(false); seek(state.length); });
ui.scrubber.addEventListener("input", () => { const was = state.playing; setPlaying(false); seek(Number(ui.scrubber.value)).then(() => was && setPlaying(true)); });
function overlayChanged() {
  kinds.forEach((k) => { k.disabled = !ui.overlays.checked; });
  if (state.playing) play(); // restarts the loop from the shown step with the new overlay
  else seek(state.step);
}
ui.overlays.addEventListener("change", overlayChanged);
kinds.forEach((k) => k.addEventListener("change", overlayChanged));
document.addEventListener("keydown", (event) => {
  if (event.target instanceof HTMLInputElement && event.target.type === "number") return;
  const keys = { " ": () => setPlaying(!state.playing), ArrowRight: () => ui.forward.click(), ArrowLeft: () => ui.back.click(),
    Home: () => ui.first.click(), End: () => ui.last.click() };
  if (keys[event.key]) { event.preventDefault(); keys[event.key](); }
});
start().catch((error) => showError(ui.problem, error));
