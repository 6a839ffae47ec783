"""How soon the viewer's pages answer in a real browser: the runs page and the sample run's page (2,194
episodes on the learning curve), in Debian's Chromium driven by Playwright.

Each round opens each page in a fresh browser context (cold: nothing cached, Plotly's 4.8 MB bundle fetched and
compiled) and then again in the same context (warm: the bundle from the browser's cache). Times are the page's
own, from the navigation's start: ``ready`` when the runs table is listed or the learning curve is drawn and
answers hovers and clicks, ``complete`` when the run page's other charts and tables are drawn too. The viewer
runs in this process (uvicorn in a thread), its run summary read once before the rounds, as a running viewer
has it.

Run:  python tests/bench/bench_viewer_pages.py [--rounds 5] [--json bench_viewer_pages.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the project before tests/, whose replay/ and render/ are tests

ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip
PAGES = {"runs": "/", "run": "/runs/sample-breakout"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chromium", type=Path, default=Path("/usr/bin/chromium"))
    parser.add_argument("--json", type=Path, default=Path("bench_viewer_pages.json"))
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright
    from served import Server

    server = Server([ROOT / "data" / "sample"])
    server.json("/api/runs/sample-breakout")  # the summary read, as a viewer that listed its runs has it
    times: dict[str, list[float]] = {
        f"{page} {when} {mark}": [] for page in PAGES for when in ("cold", "warm") for mark in ("ready", "complete")
    }
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(args.chromium), args=ARGS)
            for _ in range(args.rounds):
                for name, path in PAGES.items():
                    context = browser.new_context(viewport={"width": 1400, "height": 900})
                    page = context.new_page()
                    for when in ("cold", "warm"):
                        page.goto(server.url + path)
                        done = "body[data-complete='1']" if name == "run" else "body[data-ready='1']"
                        page.wait_for_selector(done, timeout=60_000)
                        for mark in ("ready", "complete"):
                            found = page.evaluate(f"performance.getEntriesByName('{mark}').map(m => m.startTime)")
                            if found:
                                times[f"{name} {when} {mark}"].append(found[0] / 1000)
                    context.close()
            browser.close()
    finally:
        server.stop()

    rows = {key: {"median_s": statistics.median(v), "max_s": max(v), "rounds": v} for key, v in times.items() if v}
    print(f"{'page':<22} {'median s':>9} {'max s':>7}   (goal: interactive within 1 s; {args.rounds} rounds)")
    for key, row in rows.items():
        print(f"{key:<22} {row['median_s']:>9.3f} {row['max_s']:>7.3f}")
    from render.viewer.app import plotly_js

    bundle = plotly_js()
    print(f"charts bundle: {bundle.name} ({bundle.stat().st_size / 1e6:.1f} MB)")
    report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
              "charts_bundle": {"file": str(bundle), "bytes": bundle.stat().st_size}, "pages": rows}  # fmt: skip
    partial = args.json.with_name(f".{args.json.name}.partial")
    partial.write_text(json.dumps(report, indent=2))
    os.replace(partial, args.json)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
