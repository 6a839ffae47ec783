// Training from the viewer: start a run, follow it live (its run page), stop it as Ctrl-C does, resume it.
import { getJSON, h, poll, postJSON, runLink, showError } from "/static/common.js";

const ui = Object.fromEntries(["start", "game", "total-steps", "seed", "problem", "trainers"].map((id) => [id, document.getElementById(id)]));

function row(trainer) {
  const running = trainer.state === "running";
  const stoppable = running || trainer.state === "starting";
  const resumable = trainer.run_id && ["stopped", "failed"].includes(trainer.state);
  const tail = (trainer.output || []).slice(-3).join("\n");
  return h("tr", { "data-trainer": trainer.id, "data-state": trainer.state, "data-run": trainer.run_id || "" },
    h("td", {}, trainer.run_id ? h("a", { href: runLink(trainer.run_id) }, trainer.run_id) : trainer.run_dir,
      trainer.resumed ? h("div", { class: "muted" }, "resumed") : ""),
    h("td", {}, running ? h("span", { class: "badge live" }, "training") : trainer.state,
      trainer.returncode !== null && trainer.returncode !== undefined ? h("div", { class: "muted" }, `exit ${trainer.returncode}`) : ""),
    h("td", {}, trainer.started ? new Date(trainer.started * 1000).toLocaleTimeString() : "–"),
    h("td", {}, h("pre", { class: "muted", style: "margin:0;white-space:pre-wrap;font-size:.8rem;max-width:46rem" }, tail)),
    h("td", {},
      stoppable ? h("button", { class: "stop", onclick: () => act(`/api/training/${encodeURIComponent(trainer.id)}/stop`) }, "Stop") : "",
      resumable ? h("button", { class: "resume", onclick: () => act(`/api/runs/${encodeURIComponent(trainer.run_id)}/resume`, {}) }, "Resume") : ""));
}

async function act(url, body) {
  try {
    await postJSON(url, body);
    ui.problem.replaceChildren();
  } catch (error) {
    showError(ui.problem, error);
  }
  refresh();
}

async function refresh() {
  const trainers = await getJSON("/api/training");
  if (trainers.length) {
    ui.trainers.classList.remove("muted");
    // a run that was resumed shows once, as its newest trainer
    const newest = new Map();
    for (const t of trainers) newest.set(t.run_dir, t);
    ui.trainers.replaceChildren(h("table", { class: "list", id: "trainer-table" },
      h("thead", {}, h("tr", {}, ["Run", "State", "Started", "Last output", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, [...newest.values()].reverse().map(row))));
  }
  document.body.dataset.ready = "1";
  return trainers.some((t) => ["starting", "running", "stopping"].includes(t.state));
}

ui.start.addEventListener("submit", (event) => {
  event.preventDefault();
  act("/api/training", { game: ui.game.value, total_steps: Number(ui["total-steps"].value), seed: Number(ui.seed.value) });
});

getJSON("/api/training/games").then((games) => {
  ui.game.replaceChildren(...games.map((g) => h("option", { value: g.game, selected: g.game === "Breakout" }, g.game)));
}).catch((error) => showError(ui.problem, error));
poll(refresh, ui.problem, 1000, 5000);
