"""The viewer's pages in a real browser: Debian's Chromium, headless, driven by Playwright, against a real server
over the sample run. What the player's canvas shows is compared, pixel for pixel, with the API's lossless PNG of
the same step and overlay (itself tested against ``render.render_still``)."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import FAST, compose_config
from served import Server

from replay import TrajectoryLog
from replay.run_folder import RunFolder
from replay.train import train
from replay.train.rebuild import Rebuilder

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample"
RUN = "sample-breakout"
EPISODE = 1  # a short evaluation episode of the sample run (119 steps)
CHROMIUM = Path("/usr/bin/chromium")
EXPLAINED_OLDER, EXPLAINED_EXACT = "updates older", "the version that played"  # the panel's "explained by"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip


@pytest.fixture(scope="module")
def viewer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    broken = tmp_path_factory.mktemp("runs")
    (broken / "garbage").mkdir()
    (broken / "garbage" / "trajectories.h5").write_bytes(b"not a log\n" * 100)
    server = Server([SAMPLE, broken])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium chromium-driver (.ci/run does)")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    page.close()
    assert not errors, errors


def canvas_pixels(page: object) -> np.ndarray:
    url = page.eval_on_selector("#frame", "canvas => canvas.toDataURL('image/png')")
    return _png(base64.b64decode(url.split(",", 1)[1]))


def _png(body: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def api_frame(viewer: Server, episode: int, step: int, overlay: str) -> np.ndarray:
    status, _, body = viewer.get(f"/api/runs/{RUN}/episodes/{episode}/frames/{step}.png?overlay={overlay}")
    assert status == 200, body[:300]
    return _png(body)


# (point number, trace number) of the evaluation point farthest, on the chart's scale, from every training point
FARTHEST_EVALUATION = """() => {
  const chart = document.querySelector('#curve');
  const nth = chart.data.findIndex((t) => t.name === 'evaluation episode');
  const train = chart.data.find((t) => t.name === 'training episode');
  const [x0, x1] = chart.layout.xaxis.range, [y0, y1] = chart.layout.yaxis.range;
  const evals = chart.data[nth];
  let best = -1, far = -1;
  evals.x.forEach((x, i) => {
    let near = Infinity;
    train.x.forEach((tx, j) => {
      near = Math.min(near, Math.hypot((tx - x) / (x1 - x0), (train.y[j] - evals.y[i]) / (y1 - y0)));
    });
    if (near > far) { far = near; best = i; }
  });
  return [best, nth];
}"""


def shown(page: object) -> tuple[int, str]:
    step, overlay = page.eval_on_selector("#frame", "c => [c.dataset.step, c.dataset.overlay]")
    return int(step), overlay


def test_the_runs_page_lists_the_sample_and_the_unreadable_folder(viewer: Server, page: object) -> None:
    page.goto(viewer.url + "/")
    page.wait_for_selector("body[data-ready='1']")
    sample = page.locator(f"tr[data-run='{RUN}']")
    assert "Breakout" in sample.inner_text() and "35" in sample.inner_text()
    garbage = page.locator("tr[data-run$='garbage']")
    assert "unreadable" in garbage.inner_text()
    sample.locator("a").first.click()
    page.wait_for_url(f"**/runs/{RUN}")


def test_clicking_a_point_of_the_curve_opens_that_episode(viewer: Server, page: object) -> None:
    page.goto(f"{viewer.url}/runs/{RUN}")
    page.wait_for_selector("body[data-ready='1']")
    assert int(page.get_attribute("#curve", "data-points")) == 2186  # the finished episodes
    # the evaluation episode drawn farthest from any training episode's point, so the click cannot be another's
    chosen, nth = page.evaluate(FARTHEST_EVALUATION)
    expected = page.evaluate(f"document.querySelector('#curve').data[{nth}].customdata[{chosen}][0]")
    point = page.locator("#curve .scatterlayer .trace").nth(nth).locator("path.point").nth(chosen)
    box = point.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_url(f"**/runs/{RUN}/episodes/*")
    index = int(page.url.rsplit("/", 1)[1].split("?")[0])
    assert index == expected and viewer.json(f"/api/runs/{RUN}/episodes")[index]["tag"] == "eval"
    page.wait_for_selector("canvas[data-step='0'][data-overlay='full']", timeout=60_000)


def test_play_seek_and_toggle_the_overlay_show_the_apis_exact_frames(viewer: Server, page: object) -> None:
    page.goto(f"{viewer.url}/runs/{RUN}/episodes/{EPISODE}?step=5&overlay=raw")
    page.wait_for_selector("canvas[data-step='5'][data-overlay='raw']")
    assert not page.is_checked("#overlays")
    assert np.array_equal(canvas_pixels(page), api_frame(viewer, EPISODE, 5, "raw"))

    page.click("#play")
    page.wait_for_function("Number(document.querySelector('#frame').dataset.step) >= 20", timeout=60_000)
    page.check("#overlays")  # full, while playing
    page.wait_for_selector("canvas[data-overlay='full']", timeout=60_000)
    page.wait_for_function("Number(document.querySelector('#frame').dataset.step) >= 30", timeout=60_000)
    page.click("#play")  # pause
    page.wait_for_selector("body[data-playing='0']")
    step, overlay = shown(page)
    assert overlay == "full" and step >= 30
    assert np.array_equal(canvas_pixels(page), api_frame(viewer, EPISODE, step, "full"))
    assert f"step={step}" in page.url and "overlay=full" in page.url

    # the scrubber seeks anywhere, backwards included; the step buttons move by one
    page.eval_on_selector("#scrubber", "s => { s.value = '12'; s.dispatchEvent(new Event('input')); }")
    page.wait_for_selector("canvas[data-step='12'][data-overlay='full']")
    page.click("#forward")
    page.wait_for_selector("canvas[data-step='13']")
    page.check("input[value='minimal']")
    page.wait_for_selector("canvas[data-step='13'][data-overlay='minimal']")
    assert np.array_equal(canvas_pixels(page), api_frame(viewer, EPISODE, 13, "minimal"))
    page.uncheck("#overlays")
    page.wait_for_selector("canvas[data-step='13'][data-overlay='raw']")
    page.click("#back")
    page.wait_for_selector("canvas[data-step='12'][data-overlay='raw']")
    assert np.array_equal(canvas_pixels(page), api_frame(viewer, EPISODE, 12, "raw"))
    assert "step=12" in page.url and "overlay=raw" in page.url

    # the network's reading of the shown step, beside the player, is render.explain's
    reading = viewer.json(f"/api/runs/{RUN}/episodes/{EPISODE}/readings")["frames"][12]
    page.wait_for_selector("#policy")
    taken = page.locator("#policy .bar.taken").get_attribute("data-action")
    actions = viewer.json(f"/api/runs/{RUN}/episodes/{EPISODE}/readings")["actions"]
    assert taken == actions[reading["action"]]
    assert page.inner_text("#value") == f"{reading['value']:.3f}"
    assert reading["checkpoint_version"] == reading["policy_version"]  # an evaluation episode: its checkpoint played
    assert page.inner_text("#explained") == f"v{reading['policy_version']}, the version that played"


def test_a_link_opens_the_same_frame(viewer: Server, page: object) -> None:
    page.goto(f"{viewer.url}/runs/{RUN}/episodes/{EPISODE}?step=77&overlay=minimal")
    page.wait_for_selector("canvas[data-step='77'][data-overlay='minimal']")
    assert page.is_checked("#overlays") and page.is_checked("input[value='minimal']")
    assert np.array_equal(canvas_pixels(page), api_frame(viewer, EPISODE, 77, "minimal"))


def test_screenshots_of_the_pages(viewer: Server, page: object, tmp_path: Path) -> None:
    """Every page renders; ``docs/make_pictures.py --viewer`` keeps the README's copies."""
    for name, path, ready in [
        ("runs", "/", "body[data-ready='1']"),
        ("run", f"/runs/{RUN}", "body[data-ready='1']"),
        ("episode", f"/runs/{RUN}/episodes/1662?step=400&overlay=full", "canvas[data-step='400']"),
    ]:
        page.goto(viewer.url + path)
        page.wait_for_selector(ready, timeout=60_000)
        page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
        image = cv2.imread(str(tmp_path / f"{name}.png"))
        assert image is not None and image.shape[1] == 1400 and image.std() > 10, name
    shutil.rmtree(tmp_path)


@pytest.fixture(scope="module")
def copied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A viewer over a copy of the sample run (its videos are made and deleted) and an empty runs folder for
    training."""
    runs = tmp_path_factory.mktemp("runs")
    shutil.copytree(SAMPLE / "breakout", runs / "breakout", ignore=shutil.ignore_patterns("videos"))
    server = Server([runs])
    yield server
    server.stop()


def test_a_render_job_runs_with_progress_and_cancels_from_the_videos_page(copied: Server, page: object) -> None:
    run = next(r["id"] for r in copied.json("/api/runs") if r["path"].endswith("breakout"))
    page.goto(f"{copied.url}/runs/{run}/videos")
    page.wait_for_selector("body[data-ready='1']")
    # a short episode with the game alone: it finishes, with its progress seen on the way
    page.select_option("#product", "episode")
    page.fill("#episode", str(EPISODE))
    page.uncheck("#overlays")
    page.click("#render")
    page.wait_for_selector("tr[data-job][data-state='done']", timeout=120_000)
    page.wait_for_selector("#videos [data-video]", timeout=30_000)
    card = page.locator("#videos [data-video]").first
    assert "episode" in card.inner_text() and "overlay raw" in card.inner_text()
    duration = page.eval_on_selector(
        "#videos video",
        "v => new Promise(r => v.readyState >= 1 ? r(v.duration)"
        " : v.addEventListener('loadedmetadata', () => r(v.duration)))",
    )
    assert abs(duration - (119 + 1) / 30) < 0.2  # 120 frames at 30 fps
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#videos [data-video] button.delete")
    page.wait_for_selector("#gallery:not(:has([data-video]))", timeout=30_000)

    # exact networks apply to the full overlay only; the video's card says whether they held here
    assert page.is_disabled("#exact")
    page.check("#overlays")
    assert page.is_enabled("#exact")
    page.check("input[value='minimal']")
    assert page.is_disabled("#exact")
    page.check("input[value='full']")
    page.check("#exact")
    page.click("#render")
    page.wait_for_selector("tr[data-job][data-state='done']:has-text('checkpoint exact')", timeout=300_000)
    page.wait_for_selector("#videos [data-video]", timeout=30_000)
    text = page.inner_text("#videos [data-video]")
    # on a machine like the sample's, every version rebuilds; on another CPU, the reason the overlay showed
    assert "exact networks: each frame explained by the version that played it" in text or "not exact (" in text, text
    page.uncheck("#exact")

    # a long time-lapse with the full overlay, cancelled while it runs: nothing of it is left
    page.select_option("#product", "timelapse")
    page.fill("#duration", "120")
    page.check("#overlays")
    page.click("#render")
    page.wait_for_selector("tr[data-job][data-state='running']", timeout=60_000)
    page.click("tr[data-job][data-state='running'] button.cancel")
    page.wait_for_selector("tr[data-job][data-state='cancelled']", timeout=60_000)
    videos = copied.json(f"/api/runs/{run}/videos")
    assert [(v["provenance"]["product"], v["provenance"]["config"]["checkpoint"]) for v in videos] == [
        ("episode", "exact")
    ]

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#videos [data-video] button.delete")
    page.wait_for_selector("#gallery:not(:has([data-video]))", timeout=30_000)
    assert copied.json(f"/api/runs/{run}/videos") == []


def test_a_run_started_from_the_training_page_shows_live_and_stops(copied: Server, page: object) -> None:
    page.goto(f"{copied.url}/training")
    page.wait_for_selector("#game option[value='Breakout']", state="attached")
    page.select_option("#game", "Breakout")
    page.fill("#total-steps", "1000000")
    page.fill("#seed", "3")
    page.click("#start-button")
    page.wait_for_selector("tr[data-trainer][data-state='running'] a", timeout=60_000)
    run = page.get_attribute("tr[data-trainer][data-state='running']", "data-run")
    page.click("tr[data-trainer] a")
    page.wait_for_selector("#live", timeout=60_000)  # the run page says it is training now
    # its curve grows while it trains: the first finished episodes appear as points
    page.wait_for_function("Number(document.querySelector('#curve').dataset.points || 0) > 0", timeout=240_000)
    episodes = copied.json(f"/api/runs/{run}/episodes")
    finished = next(e for e in episodes if e["finished"])
    status, _, _ = copied.get(
        f"/api/runs/{run}/episodes/{finished['index']}/frames/{finished['length']}.png?overlay=raw"
    )
    assert status == 200
    page.goto(f"{copied.url}/training")
    page.click("tr[data-trainer] button.stop")
    page.wait_for_selector("tr[data-trainer][data-state='stopped']", timeout=120_000)
    assert not next(r for r in copied.json("/api/runs") if r["id"] == run)["live"]
    assert page.locator("tr[data-trainer] button.resume").count() == 1


def test_the_player_follows_versions_rebuilt_while_it_is_open(browser: object, tmp_path: Path) -> None:
    """An episode open with the full overlay while its versions are rebuilt (by a render job, say): the next frame
    fetched is drawn by the versions that played, and the panel beside it says so."""
    run = tmp_path / "runs" / "tiny"
    train(compose_config([*FAST, "total_steps=1536", "seed=5", f"run_dir={run}"]))
    saved = set(RunFolder(run).checkpoint_versions())
    with TrajectoryLog(RunFolder(run).log) as log:
        episode = next(
            e for e in log.episodes if e.tag == "train" and e.finished and not set(e.policy_versions) & saved
        )
    server = Server([run.parent])
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        [listed] = server.json("/api/runs")
        url = f"{server.url}/runs/{listed['id']}/episodes/{episode.index}"
        page.goto(f"{url}?step=5&overlay=full")
        page.wait_for_selector("canvas[data-step='5'][data-overlay='full']", timeout=60_000)
        page.wait_for_function(f"document.querySelector('#explained')?.textContent.includes('{EXPLAINED_OLDER}')")

        Rebuilder(run, progress=False).prepare(episode.policy_versions)
        step = episode.length // 2
        page.eval_on_selector("#scrubber", f"s => {{ s.value = '{step}'; s.dispatchEvent(new Event('input')); }}")
        page.wait_for_selector(f"canvas[data-step='{step}'][data-overlay='full']", timeout=60_000)
        page.wait_for_function(f"document.querySelector('#explained')?.textContent.endsWith('{EXPLAINED_EXACT}')")
        status, _, body = server.get(
            f"/api/runs/{listed['id']}/episodes/{episode.index}/frames/{step}.png?overlay=full"
        )
        assert status == 200 and np.array_equal(canvas_pixels(page), _png(body))
        reading = server.json(f"/api/runs/{listed['id']}/episodes/{episode.index}/readings")["frames"][step]
        assert page.inner_text("#explained") == f"v{reading['policy_version']}, the version that played"
        assert reading["checkpoint_version"] == reading["policy_version"]
    finally:
        page.close()
        server.stop()
