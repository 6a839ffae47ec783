"""Make the viewer's pictures in ``docs/``: screenshots of its pages in Chromium, over the sample run.

    python docs/make_viewer_pictures.py [--chromium /usr/bin/chromium]

A viewer is started in this process over a scratch copy of the sample run (so the videos page has a video to
show and the training page a run to train) and Debian's Chromium, driven by Playwright, takes each page at
1400 px wide: ``viewer-runs.png``, ``viewer-run.png``, ``viewer-episode.png``, ``viewer-videos.png`` and
``viewer-training.png``. The training page's run is a real trainer started from the page and stopped after its
first episodes. Every file is written atomically (a temporary file, then rename).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the project before tests/, whose replay/ and render/ are tests

ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip


def shoot(page: object, name: str, *, full_page: bool = False) -> None:
    output = DOCS / name
    partial = output.with_name(f".{output.name}.partial.png")
    page.screenshot(path=str(partial), full_page=full_page)
    os.replace(partial, output)
    print(f"wrote {output.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", type=Path, default=Path("/usr/bin/chromium"))
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright
    from served import Server

    with tempfile.TemporaryDirectory() as scratch:
        runs = Path(scratch) / "runs"
        shutil.copytree(
            ROOT / "data" / "sample" / "breakout", runs / "breakout", ignore=shutil.ignore_patterns("videos")
        )
        server = Server([runs])
        run = next(r["id"] for r in server.json("/api/runs") if r["path"].endswith("breakout"))
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(args.chromium), args=ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 900})

                page.goto(f"{server.url}/runs/{run}/episodes/1662?step=400&overlay=full")
                page.wait_for_selector("canvas[data-step='400'][data-overlay='full']", timeout=120_000)
                page.wait_for_selector("#policy", timeout=120_000)
                shoot(page, "viewer-episode.png")

                page.goto(f"{server.url}/runs/{run}")
                page.wait_for_selector("body[data-complete='1']", timeout=60_000)
                time.sleep(0.5)
                shoot(page, "viewer-run.png")

                page.goto(f"{server.url}/runs/{run}/videos")
                page.wait_for_selector("body[data-ready='1']")
                page.fill("#episode", "1")
                page.uncheck("#overlays")
                page.click("#render")
                page.wait_for_selector("tr[data-job][data-state='done']", timeout=300_000)
                page.wait_for_selector("#videos [data-video]", timeout=60_000)
                page.select_option("#product", "timelapse")
                page.check("#overlays")
                page.click("#render")
                page.wait_for_function(
                    "[...document.querySelectorAll('tr[data-state=running] progress')].some(p => p.value > 0.05)",
                    timeout=300_000,
                )
                shoot(page, "viewer-videos.png")
                page.click("tr[data-job][data-state='running'] button.cancel")
                page.wait_for_selector("tr[data-job][data-state='cancelled']", timeout=120_000)

                page.goto(f"{server.url}/training")
                page.wait_for_selector("#game option[value='Pong']", state="attached")
                page.select_option("#game", "Pong")
                page.fill("#total-steps", "1000000")
                page.click("#start-button")
                page.wait_for_selector("tr[data-trainer][data-state='running']", timeout=120_000)
                time.sleep(20)
                shoot(page, "viewer-training.png")

                page.goto(f"{server.url}/")  # the runs, one of them live
                page.wait_for_selector("body[data-ready='1']")
                shoot(page, "viewer-runs.png")

                page.goto(f"{server.url}/training")
                page.wait_for_selector("tr[data-trainer] button.stop")
                page.click("tr[data-trainer] button.stop")
                page.wait_for_selector("tr[data-trainer][data-state='stopped']", timeout=120_000)
                browser.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
