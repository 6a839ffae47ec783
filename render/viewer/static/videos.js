// A run's videos: a form that starts a render job (the real renderer, in the viewer's bounded queue), the jobs
// with a live progress bar and cancel, and the gallery of the run's videos with what each shows (its sidecar).
import { bytes, getJSON, h, pathParts, poll, postJSON, runLink, showError } from "/static/common.js";

const runId = pathParts().run;
const ui = Object.fromEntries(["title", "run-link", "make", "product", "episode", "duration", "layout", "overlays",
  "exact", "problem", "jobs", "gallery"].map((id) => [id, document.getElementById(id)]));
const kinds = [...document.querySelectorAll("input[name=kind]")];
let galleryKey = null;

function fields() {
  for (const label of document.querySelectorAll("label[data-for]")) label.hidden = label.dataset.for !== ui.product.value;
  kinds.forEach((k) => { k.disabled = !ui.overlays.checked; });
  ui.exact.disabled = !ui.overlays.checked || kinds.find((k) => k.checked).value !== "full";
}

function when(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : "–";
}

function describe(params) {
  return Object.entries(params || {}).map(([k, v]) => `${k} ${v}`).join(", ");
}

function jobRow(job) {
  const open = job.state === "queued" || job.state === "running";
  return h("tr", { "data-job": job.id, "data-state": job.state },
    h("td", {}, job.product, h("div", { class: "muted" }, describe(job.params))),
    h("td", {}, job.state),
    h("td", {}, h("progress", { max: 1, value: job.progress ?? 0 }),
      " ", job.total ? `${job.frames} / ${job.total} frames` : "",
      open && !job.frames && job.rebuilding && job.rebuilding.updates < job.rebuilding.total  // rebuilt before encoding
        ? h("div", { class: "muted" }, `rebuilding the networks ${job.rebuilding.versions}: `
          + `${job.rebuilding.updates} / ${job.rebuilding.total} updates`) : ""),
    h("td", {}, job.error ? h("span", { class: "error" }, job.error) : job.video ? job.video : ""),
    h("td", {}, open ? h("button", { class: "cancel", onclick: () => cancel(job.id) }, "Cancel") : ""));
}

async function cancel(id) {
  try {
    await getJSON(`/api/jobs/${encodeURIComponent(id)}`, { method: "DELETE" });
  } catch (error) {
    showError(ui.problem, error);
  }
  refresh();
}

function videoCard(video) {
  const p = video.provenance || {};
  const episodes = (p.episodes || []).map((e) => e.index);
  const lines = [
    `${p.product || "video"} · overlay ${p.overlay || "?"} · ${p.fps || "?"} fps`,
    episodes.length ? `episode${episodes.length > 1 ? "s" : ""} ${episodes.length > 6 ? `${episodes.slice(0, 6).join(", ")}… (${episodes.length})` : episodes.join(", ")}` : "",
    p.exact ? (p.exact.fallback ? `not exact (${p.exact.brief || "see the sidecar"}): nearest checkpoints` : "exact networks: each frame explained by the version that played it") : "",
    `${bytes(video.size)} · made ${when(video.created)}`,
  ];
  return h("div", { class: "card", "data-video": video.name },
    h("video", { src: video.url, controls: true, preload: "metadata", style: "width:100%;max-height:320px;background:#000" }),
    h("div", {}, h("b", {}, video.name)),
    lines.filter(Boolean).map((line) => h("div", { class: "muted" }, line)),
    video.error ? h("div", { class: "error" }, video.error) : "",
    h("div", { class: "controls" },
      h("a", { href: `${video.url}?download=1` }, "Download"),
      h("button", { class: "delete", onclick: () => remove(video) }, "Delete")));
}

async function remove(video) {
  if (!confirm(`Delete ${video.name} and its sidecar?`)) return;
  try {
    await getJSON(video.url, { method: "DELETE" });
  } catch (error) {
    showError(ui.problem, error);
  }
  galleryKey = null;
  refresh();
}

async function refresh() {
  const [jobs, videos] = await Promise.all([
    getJSON(`/api/jobs?run=${encodeURIComponent(runId)}`), getJSON(`/api/runs/${encodeURIComponent(runId)}/videos`)]);
  if (jobs.length) {
    ui.jobs.classList.remove("muted");
    ui.jobs.replaceChildren(h("table", { class: "list", id: "job-table" },
      h("thead", {}, h("tr", {}, ["Product", "State", "Progress", "Result", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, jobs.map(jobRow))));
  }
  const key = videos.map((v) => `${v.name}:${v.size}`).join("|");
  if (key !== galleryKey) { // a card holds a <video>: rebuild only when the gallery changed
    galleryKey = key;
    ui.gallery.classList.toggle("muted", !videos.length);
    ui.gallery.replaceChildren(videos.length ? h("div", { class: "grid2", id: "videos" }, videos.map(videoCard))
      : "No videos yet: render one above, or with python -m render.");
  }
  document.body.dataset.ready = "1";
  return jobs.some((job) => job.state === "queued" || job.state === "running");
}

ui.make.addEventListener("submit", async (event) => {
  event.preventDefault();
  const product = ui.product.value;
  const body = { product, overlay: ui.overlays.checked ? kinds.find((k) => k.checked).value : "raw" };
  if (product === "episode") body.episode = /^\d+$/.test(ui.episode.value.trim()) ? Number(ui.episode.value) : ui.episode.value.trim();
  if (product === "timelapse") body.duration = Number(ui.duration.value);
  if (product === "progression") body.layout = ui.layout.value;
  if (!ui.exact.disabled && ui.exact.checked) body.checkpoint = "exact";
  try {
    await postJSON(`/api/runs/${encodeURIComponent(runId)}/jobs`, body);
    ui.problem.replaceChildren();
  } catch (error) {
    showError(ui.problem, error);
  }
  refresh();
});
ui.product.addEventListener("change", fields);
ui.overlays.addEventListener("change", fields);
kinds.forEach((k) => k.addEventListener("change", fields));
ui.title.textContent = `Videos · ${runId}`;
document.title = `Videos · ${runId} · ale-replay viewer`;
ui["run-link"].href = runLink(runId);
fields();
poll(refresh, ui.problem, 700, 4000);
