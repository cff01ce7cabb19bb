"""The review page in real headless Chromium: loads clean, plays, takes verdicts, exports CSV.

Needs Debian's ``chromium`` (/usr/bin/chromium) and the ``playwright`` package (no browser
download: Playwright drives the system Chromium).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from scanner.review import build_review

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
NASTY = "cam <b>1<i> & \"q\" 20240131_235959.wav"
META = {b"scanner": json.dumps({"classes": ["cry", "screaming", "not_screaming"],
                                "heads": [{"name": "h1"}]}).encode()}


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} in CI: apt-get install -y chromium; pip install playwright")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("playwright is not installed")
    if not CHROMIUM.exists():
        _skip_or_fail(f"{CHROMIUM} is missing")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


class Page:
    """A review page open in the browser, with its console errors collected."""

    def __init__(self, browser: Any, index: Path) -> None:
        self.context = browser.new_context(accept_downloads=True)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(index.as_uri())
        self.page.wait_for_function(
            "() => [...document.querySelectorAll('audio')].every(a => a.readyState >= 1)"
            " && [...document.querySelectorAll('img.spec')].every(i => i.complete && i.naturalWidth > 0)",
            timeout=20_000)

    def download_csv(self, folder: Path) -> list[dict[str, str]]:
        with self.page.expect_download() as info:
            self.page.click("#download")
        download = info.value
        assert download.suggested_filename == "verdicts.csv"
        target = folder / "verdicts.csv"
        download.save_as(target)
        with target.open(newline="") as f:
            return list(csv.DictReader(f))

    def close(self) -> None:
        self.context.close()


def click_verdicts(page: Page, choices: list[tuple[str, str | None]]) -> None:
    """Marks card i with choices[i]: by key for yes/skip, by button for no/other."""
    for i, (verdict, other) in enumerate(choices):
        card = page.page.locator("article.card").nth(i)
        card.locator(".path").click()  # makes it the current card
        if verdict == "yes":
            page.page.keyboard.press("y")
        elif verdict == "skip":
            page.page.keyboard.press("s")
        elif verdict == "no":
            card.locator("button.no").click()
        else:
            card.locator("select.choice").select_option(other)
            card.locator("button.other").click()


def _recording(path: Path, seconds: float, sr: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    x = 0.05 * rng.standard_normal(int(seconds * sr))
    x[int(2 * sr):int(4 * sr)] += 0.4 * np.sin(2 * np.pi * 700 * np.arange(int(2 * sr)) / sr)
    sf.write(path, x.astype(np.float32), sr)
    return path


@pytest.fixture()
def events(tmp_path: Path) -> tuple[Path, list[Path]]:
    audio = tmp_path / "audio"
    audio.mkdir()
    recs = [_recording(audio / NASTY, 9.0, 16000, 0), _recording(audio / "b.flac", 5.0, 44100, 1)]
    table = tmp_path / "r.events.parquet"
    pq.write_table(pa.table({
        "path": [str(recs[0]), str(recs[0]), str(recs[1]), str(recs[1])],
        "label": ["screaming", "cry", "screaming", "cry"], "start_s": [2.0, 7.5, 0.0, 3.2],
        "end_s": [4.0, 9.0, 1.5, 5.0], "peak_confidence": [0.97, 0.61, 0.7, 0.55],
        "mean_confidence": [0.9, 0.55, 0.6, 0.5]}).replace_schema_metadata(META), table)
    return table, recs


def test_page_loads_clean_plays_and_exports_the_clicked_verdicts(browser, events, tmp_path: Path
                                                                 ) -> None:
    table, recs = events
    out = tmp_path / "review"
    result = build_review(table, out, select="all")
    cards = json.loads((out / "review.json").read_text())["items"]
    page = Page(browser, result.index)
    try:
        p = page.page
        assert p.locator("article.card").count() == 4
        assert p.locator(".path").first.inner_text() == str(recs[0])  # shown as text
        assert p.locator(".path b").count() == 0
        durations = p.evaluate("() => [...document.querySelectorAll('audio')].map(a => a.duration)")
        lengths = {str(recs[0]): 9.0, str(recs[1]): 5.0}
        for card, dur in zip(cards, durations, strict=True):
            assert dur == pytest.approx(card["clip_duration_s"], abs=0.05)
            assert card["clip_start_s"] == pytest.approx(max(0.0, card["start_s"] - 1.0), abs=1e-3)
            end = min(lengths[card["path"]], card["end_s"] + 1.0)
            assert card["clip_start_s"] + dur == pytest.approx(end, abs=0.05)

        p.keyboard.press("p")  # plays the current (first) card
        p.wait_for_function("() => document.querySelector('audio').currentTime > 0.2",
                            timeout=10_000)
        p.keyboard.press("p")
        assert p.evaluate("() => document.querySelector('audio').paused")

        click_verdicts(page, [("yes", None), ("no", None), ("other", "cry"), ("skip", None)])
        assert p.locator("#progress").inner_text() == "4 / 4 reviewed"
        p.screenshot(path=str(tmp_path / "review.png"), full_page=True)
        rows = page.download_csv(tmp_path)
        got = [(r["path"], float(r["start_s"]), float(r["end_s"]), r["label"], r["verdict"],
                r["corrected_label"], r["head"]) for r in rows]
        assert got == [
            (str(recs[0]), 2.0, 4.0, "screaming", "yes", "", "h1"),
            (str(recs[0]), 7.5, 9.0, "cry", "no", "", "h1"),
            (str(recs[1]), 0.0, 1.5, "screaming", "other", "cry", "h1"),
            (str(recs[1]), 3.2, 5.0, "cry", "skip", "", "h1"),
        ]
        assert all(r["reviewed_at"] for r in rows)
        assert float(rows[0]["score"]) == pytest.approx(0.97)

        p.reload()  # verdicts are kept in the browser
        p.wait_for_selector("article.card")
        assert p.locator("#progress").inner_text() == "4 / 4 reviewed"
        assert p.locator("article.card").nth(2).locator(".verdict").inner_text() == "other: cry"
        assert page.errors == []
    finally:
        page.close()


def test_two_pages_keep_their_own_verdicts(browser, events, tmp_path: Path) -> None:
    table, _ = events
    a = build_review(table, tmp_path / "a", select="all")
    b = build_review(table, tmp_path / "b", select="top", per_class=1)
    page = Page(browser, a.index)
    try:
        click_verdicts(page, [("yes", None)])
        page.page.goto(b.index.as_uri())
        page.page.wait_for_selector("article.card")
        assert page.page.locator("#progress").inner_text() == "0 / 2 reviewed"
        assert page.errors == []
    finally:
        page.close()
