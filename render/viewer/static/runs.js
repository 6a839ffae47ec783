// The runs page: every run found, with its game, size and returns; live runs refresh while they train.
import { bytes, episodeLink, getJSON, h, number, runLink, showError, steps } from "/static/common.js";

const where = document.getElementById("runs");
const details = new Map(); // run id -> [key, GET /api/runs/{id}] (read again when the run grows)

async function detail(run) {
  const key = `${run.env_steps}/${run.episodes}`;
  const known = details.get(run.id);
  if (known && known[0] === key) return known[1];
  const body = await getJSON(`/api/runs/${encodeURIComponent(run.id)}`);
  details.set(run.id, [key, body]);
  return body;
}

function row(run, info) {
  if (run.error) {
    return h("tr", { "data-run": run.id },
      h("td", {}, run.id, h("div", { class: "muted" }, run.path)),
      h("td", { colspan: 7, class: "error" }, h("span", { class: "badge bad" }, "unreadable"), " ", run.error));
  }
  const summary = info.summary;
  const best = summary.best_episode;
  return h("tr", { "data-run": run.id },
    h("td", {}, h("a", { href: runLink(run.id) }, run.id), h("div", { class: "muted" }, run.path)),
    h("td", {}, run.game),
    h("td", { class: "num" }, steps(run.env_steps)),
    h("td", { class: "num" }, run.episodes),
    h("td", { class: "num" }, number(summary.mean_return_last_100)),
    h("td", { class: "num" }, best ? h("a", { href: episodeLink(run.id, best.index) }, number(best.total_reward)) : "–"),
    h("td", { class: "num" }, bytes(summary.size_bytes.total)),
    h("td", {}, run.live ? h("span", { class: "badge live" }, "live") : ""));
}

async function refresh() {
  const runs = await getJSON("/api/runs");
  const infos = await Promise.all(runs.map((run) => (run.error ? null : detail(run).catch((e) => ({ failed: e })))));
  const rows = runs.map((run, i) =>
    infos[i] && infos[i].failed ? row({ ...run, error: infos[i].failed.message }, null) : row(run, infos[i]));
  const table = h("table", { class: "list", id: "runs-table" },
    h("thead", {}, h("tr", {},
      ["Run", "Game", "Env steps", "Episodes", "Mean return (last 100)", "Best return", "Size on disk", ""].map(
        (name, i) => h("th", { class: i >= 2 && i <= 6 ? "num" : "" }, name)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 8, class: "muted" },
      "No runs found. Train one (Training, above) or start the viewer with --runs DIR."))));
  where.replaceChildren(table);
  if (!document.body.dataset.ready) performance.mark("ready");
  document.body.dataset.ready = "1";
  return runs.some((run) => run.live);
}

async function loop() {
  let live = false;
  try {
    live = await refresh();
  } catch (error) {
    showError(where, error);
  }
  setTimeout(loop, live ? 2000 : 5000);
}
loop();
