// A run's page: the learning curve (every episode a point, click to play it), the training metrics and the
// milestones; a live run's curve grows as the trainer writes.
import { bytes, episodeLink, getJSON, h, number, pathParts, showError, steps } from "/static/common.js";

const runId = pathParts().run;
const api = `/api/runs/${encodeURIComponent(runId)}`;
const layoutBase = { margin: { l: 56, r: 16, t: 34, b: 44 }, font: { size: 12 }, hovermode: "closest" };
const config = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["select2d", "lasso2d"] };
let curveReady = false;

// env steps at each policy version (the step count when that update was made); version 0 is step 0
function stepOfVersion(updates) {
  const map = new Map([[0, 0]]);
  (updates.policy_version || []).forEach((v, i) => map.set(v, updates.global_step[i]));
  return (v) => (map.has(v) ? map.get(v) : null);
}

function movingMean(xs, ys, window) {
  const out = [];
  let sum = 0;
  for (let i = 0; i < ys.length; i++) {
    sum += ys[i];
    if (i >= window) sum -= ys[i - window];
    out.push(sum / Math.min(i + 1, window));
  }
  return { x: xs, y: out };
}

function curve(run, episodes, updates) {
  const stepOf = stepOfVersion(updates);
  const byX = (e) => {
    const last = e.policy_versions[e.policy_versions.length - 1];
    const s = stepOf(last);
    return s === null ? e.index : s;
  };
  const finished = episodes.filter((e) => e.finished && e.total_reward !== null);
  const traces = [];
  for (const [tag, name, color, size, symbol] of [
    ["train", "training episode", "rgba(91,141,239,0.55)", 5, "circle"],
    ["eval", "evaluation episode", "#f08c00", 9, "diamond"],
  ]) {
    const chosen = finished.filter((e) => e.tag === tag).sort((a, b) => byX(a) - byX(b) || a.index - b.index);
    if (!chosen.length) continue;
    traces.push({
      type: "scatter", mode: "markers", name, x: chosen.map(byX), y: chosen.map((e) => e.total_reward),
      customdata: chosen.map((e) => [e.index, e.length, e.policy_versions[0], e.policy_versions[1]]),
      marker: { color, size, symbol, line: tag === "eval" ? { color: "#7a4500", width: 1 } : undefined },
      hovertemplate: `${name} %{customdata[0]}<br>return %{y}<br>%{customdata[1]} steps, policy v%{customdata[2]}–v%{customdata[3]}<br>at %{x:,} env steps<extra>click to play</extra>`,
    });
    if (tag === "train" && chosen.length >= 20) {
      const mean = movingMean(chosen.map(byX), chosen.map((e) => e.total_reward), 100);
      traces.push({ type: "scatter", mode: "lines", name: "training, mean of last 100", ...mean,
        line: { color: "#1d2330", width: 2 }, hoverinfo: "skip" });
    }
  }
  const unfinished = episodes.length - finished.length;
  document.getElementById("curve-note").textContent =
    "Every finished episode is a point: hover for its details, click one to play it." +
    (unfinished ? ` ${unfinished} unfinished episodes (cut by the end of training) have no return and are not drawn.` : "");
  const milestones = (run.summary.checkpoints || []).map((v) => stepOf(v)).filter((s) => s !== null);
  const layout = {
    ...layoutBase, title: { text: "Learning curve: return of every episode", x: 0.01 },
    xaxis: { title: { text: updates.global_step ? "env steps" : "episode" } }, yaxis: { title: { text: "return" } },
    legend: { orientation: "h", y: -0.18 },
    shapes: milestones.map((x) => ({ type: "line", x0: x, x1: x, yref: "paper", y0: 0, y1: 1,
      line: { color: "rgba(0,0,0,0.18)", width: 1, dash: "dot" } })),
    uirevision: runId,
  };
  const element = document.getElementById("curve");
  Plotly.react(element, traces, layout, config);
  if (!curveReady) {
    element.on("plotly_click", (event) => {
      const point = event.points && event.points[0];
      if (point && point.customdata) location.href = episodeLink(runId, point.customdata[0]);
    });
    curveReady = true;
  }
  element.dataset.points = String(finished.length);
}

function lines(id, title, updates, series, yTitle, log = false) {
  const x = updates.global_step;
  if (!x || !x.length) {
    document.getElementById(id).replaceChildren(h("p", { class: "muted" }, `${title}: no updates.csv in this run`));
    return;
  }
  const traces = series.filter(([key]) => updates[key]).map(([key, name, color]) => ({
    type: "scatter", mode: "lines", name, x, y: updates[key], line: { color, width: 1.5 },
  }));
  Plotly.react(document.getElementById(id), traces, {
    ...layoutBase, title: { text: title, x: 0.01 }, showlegend: traces.length > 1, legend: { orientation: "h", x: 1, xanchor: "right", y: 1.12 },
    xaxis: { title: { text: "env steps" } }, yaxis: { title: { text: yTitle }, type: log ? "log" : "linear" },
    uirevision: runId,
  }, config);
}

function stats(run) {
  const s = run.summary;
  const best = s.best_episode;
  document.getElementById("title").replaceChildren(`${s.game} · ${run.id} `,
    run.live ? h("span", { class: "badge live", id: "live" }, "live: training now") : "");
  document.title = `${run.id} · ale-replay viewer`;
  const count = (tag) => s.episodes[tag] ? s.episodes[tag].finished + s.episodes[tag].unfinished : 0;
  document.getElementById("stats").replaceChildren(
    h("div", {}, "Environment ", h("b", {}, s.env_id)),
    h("div", {}, "Env steps ", h("b", {}, steps(s.env_steps))),
    h("div", {}, "Episodes ", h("b", {}, `${count("train")} training, ${count("eval")} evaluation`)),
    h("div", {}, "Mean return (last 100) ", h("b", {}, number(s.mean_return_last_100))),
    h("div", {}, "Best ", best ? h("a", { href: episodeLink(runId, best.index) }, `${number(best.total_reward)} (episode ${best.index})`) : "–"),
    h("div", {}, "On disk ", h("b", {}, bytes(s.size_bytes.total)), h("span", { class: "muted" }, ` (log ${bytes(s.size_bytes.log)})`)),
    h("div", {}, h("a", { href: `/runs/${encodeURIComponent(runId)}/videos` }, "Videos of this run")),
    h("div", {}, h("span", { class: "muted" }, run.path)));
}

function milestones(run, episodes, updates) {
  const stepOf = stepOfVersion(updates);
  const versions = run.summary.checkpoints || [];
  const where = document.getElementById("milestones");
  if (!versions.length) {
    where.replaceChildren("This run has no checkpoints: its episodes play with the raw and minimal overlays only.");
    return;
  }
  const evals = episodes.filter((e) => e.tag === "eval" && e.finished);
  const rows = versions.map((v) => {
    const played = evals.filter((e) => e.policy_versions[0] === v);
    const best = played.reduce((a, e) => (a === null || e.total_reward > a.total_reward ? e : a), null);
    return h("tr", {},
      h("td", { class: "num" }, `v${v}`), h("td", { class: "num" }, steps(stepOf(v))),
      h("td", { class: "num" }, played.length ? number(played.reduce((a, e) => a + e.total_reward, 0) / played.length) : "–"),
      h("td", {}, best ? h("a", { href: episodeLink(runId, best.index) }, `episode ${best.index} (return ${number(best.total_reward)})`) : "–"));
  });
  where.classList.remove("muted");
  where.replaceChildren(h("table", { class: "list" },
    h("thead", {}, h("tr", {}, h("th", { class: "num" }, "checkpoint"), h("th", { class: "num" }, "env steps"),
      h("th", { class: "num" }, "mean evaluation return"), h("th", {}, "best evaluation episode"))),
    h("tbody", {}, rows)));
}

function opener(episodes) {
  const where = document.getElementById("open");
  if (where.dataset.count === String(episodes.length)) return;
  where.dataset.count = String(episodes.length);
  const input = h("input", { type: "number", min: 0, max: episodes.length - 1, value: 0, id: "episode-number" });
  const top = episodes.filter((e) => e.finished && e.total_reward !== null)
    .sort((a, b) => b.total_reward - a.total_reward || a.index - b.index).slice(0, 8);
  const last = episodes.slice(-4).reverse();
  const item = (e) => h("li", {}, h("a", { href: episodeLink(runId, e.index) }, `episode ${e.index}`),
    ` · ${e.tag} · ${e.total_reward === null ? "unfinished" : "return " + number(e.total_reward)} · ${e.length} steps`);
  where.replaceChildren(
    h("form", { class: "inline", onsubmit: (ev) => { ev.preventDefault(); location.href = episodeLink(runId, Number(input.value)); } },
      h("label", {}, `Episode (0–${episodes.length - 1})`, input), h("button", { class: "primary" }, "Play")),
    h("div", { class: "grid2" },
      h("div", {}, h("h2", {}, "Best"), h("ul", {}, top.map(item))),
      h("div", {}, h("h2", {}, "Newest"), h("ul", {}, last.map(item)))));
}

async function refresh() {
  const [run, episodes, metrics] = await Promise.all([getJSON(api), getJSON(`${api}/episodes`), getJSON(`${api}/metrics`)]);
  const updates = metrics.updates;
  stats(run);
  curve(run, episodes, updates);
  if (!document.body.dataset.ready) performance.mark("ready"); // the curve answers hovers and clicks
  document.body.dataset.ready = "1"; // the rest is drawn in the next task
  await new Promise((resolve) => setTimeout(resolve, 0));
  lines("losses", "Losses", updates, [["policy_loss", "policy loss", "#2563eb"], ["value_loss", "value loss", "#c92a2a"]], "loss");
  lines("entropy", "Policy entropy", updates, [["entropy", "entropy", "#7048e8"]], "nats");
  lines("learning-rate", "Learning rate", updates, [["learning_rate", "learning rate", "#0b7285"]], "learning rate");
  lines("speed", "Training speed", updates, [["steps_per_second", "env steps/s", "#2b8a3e"]], "env steps/s");
  milestones(run, episodes, updates);
  opener(episodes);
  if (!document.body.dataset.complete) performance.mark("complete");
  document.body.dataset.complete = "1";
  return run.live;
}

// a live run is read again every 2 s; a run that cannot be read (a trainer's first flush not yet written, a
// damaged log) says why and is tried again
async function loop() {
  const problem = document.getElementById("problem");
  try {
    const live = await refresh();
    problem.replaceChildren();
    if (live) setTimeout(loop, 2000);
  } catch (error) {
    showError(problem, error);
    setTimeout(loop, 3000);
  }
}
loop();
