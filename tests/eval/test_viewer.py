"""The HTML viewer page: self-contained, data that round-trips, safe escaping, relative URL-encoded video links; and
in a real headless chromium (skipped without one): no console errors, a click seeks, the slider filters."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest

from lofi.data.annotations import Detection, Segment
from lofi.eval.viewer import DATA_ELEMENT_ID, ViewerVideo, video_src, viewer_palette, write_viewer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from _videos import write_video  # noqa: E402

CHROMIUM = os.environ.get("LOFI_CHROMIUM", "/usr/bin/chromium")
#: Set to a path to keep the realistic page's screenshot (e.g. /tmp/viewer_screenshot.png).
SCREENSHOT_ENV = "LOFI_VIEWER_SCREENSHOT"
CLASSES = ["Long jump", "High jump", "Pole vault", "Shot put", "Discus <throw> & \"spin\""]


def _data_block(page: Path) -> dict:
    text = page.read_text(encoding="utf-8")
    match = re.search(rf'<script type="application/json" id="{DATA_ELEMENT_ID}">(.*?)</script>', text, re.DOTALL)
    assert match, "no JSON data block"
    return json.loads(match.group(1))


def _random_detections(rng: np.random.Generator, *, duration_sec: float, num: int) -> list[Detection]:
    detections = []
    for _ in range(num):
        start = float(rng.uniform(0, 0.9 * duration_sec))
        length = float(rng.uniform(0.02, 0.15) * duration_sec)
        detections.append(Detection(round(start, 2), round(min(start + length, duration_sec), 2),
                                    CLASSES[int(rng.integers(len(CLASSES)))], round(float(rng.uniform(0.05, 1)), 3)))
    return detections


def _realistic_videos(video_dir: Path) -> list[ViewerVideo]:
    """3 videos, 5 classes, ~20 detections each, ground truth on the first."""
    rng = np.random.default_rng(0)
    videos = []
    for k, duration_sec in enumerate([12.0, 30.0, 6.0]):
        path = write_video(video_dir / f"match {k} #{k}.mp4", duration_sec=duration_sec, fps=5, size_px=64)
        detections = _random_detections(rng, duration_sec=duration_sec, num=20)
        ground_truth = ([Segment(1.0, 3.5, CLASSES[0]), Segment(5.0, 6.0, CLASSES[2]), Segment(8.0, 11.0, CLASSES[4])]
                        if k == 0 else None)
        videos.append(ViewerVideo(f"video_{k:02d}", path, duration_sec, detections, ground_truth))
    return videos


# ---- Pure Python.

def test_page_is_self_contained_and_data_round_trips(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"not read")
    detections = [Detection(0.5, 1.5, "a", 0.9), Detection(2.0, 3.25, "b", 0.1)]
    ground_truth = [Segment(0.4, 1.6, "a")]
    page = write_viewer(tmp_path / "html", [ViewerVideo("v", video, 4.0, detections, ground_truth),
                                            ViewerVideo("empty", video, 0.4, [])],
                        classes=["b", "a"], title="t & <t>", min_score=0.3)
    assert page == tmp_path / "html" / "index.html"
    text = page.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    assert not re.search(r"<script[^>]*\bsrc=", text) and not re.search(r"<link\b", text)
    assert "<title>t &amp; &lt;t&gt;</title>" in text
    assert b"not read" not in page.read_bytes()  # the video is linked, never embedded
    data = _data_block(page)
    assert data["classes"] == ["b", "a"] and data["min_score"] == 0.3
    assert data["colors"] == list(viewer_palette(["b", "a"]).values())
    first, empty = data["videos"]
    assert first["video_id"] == "v" and first["duration_sec"] == 4.0 and first["src"] == "../v.mp4"
    assert first["detections"] == [[0.5, 1.5, 1, 0.9], [2.0, 3.25, 0, 0.1]]
    assert first["ground_truth"] == [[0.4, 1.6, 1]]
    assert empty["detections"] == [] and empty["ground_truth"] is None


def test_labels_cannot_break_the_script_block(tmp_path: Path) -> None:
    nasty = ["</script><script>alert(1)</script>", "<!-- x", "a & b \u2028 \"q\" 'q'", "é ü 跳远"]
    video = tmp_path / "v.mp4"
    detections = [Detection(0.0, 1.0, label, 0.5) for label in nasty]
    page = write_viewer(tmp_path, [ViewerVideo("</script>", video, 2.0, detections)])
    text = page.read_text(encoding="utf-8")
    assert text.count("</script>") == 2  # the JSON block's and the code's own
    assert "<!--" not in text and "\u2028" not in text
    data = _data_block(page)
    assert sorted(data["classes"]) == sorted(nasty) and data["videos"][0]["video_id"] == "</script>"


def test_video_paths_are_relative_and_url_encoded(tmp_path: Path) -> None:
    video = tmp_path / "videos" / "my clip #1?.mp4"
    assert video_src(video, page_dir=tmp_path / "html") == "../videos/my%20clip%20%231%3F.mp4"
    assert video_src(tmp_path / "html" / "ü.mp4", page_dir=tmp_path / "html") == "%C3%BC.mp4"
    page = write_viewer(tmp_path / "html", [ViewerVideo("v", video, 1.0, [])])
    src = _data_block(page)["videos"][0]["src"]
    assert src == "../videos/my%20clip%20%231%3F.mp4"
    assert (page.parent / unquote(src)).resolve() == video.resolve()


def test_classes_not_given_are_sorted_and_appended(tmp_path: Path) -> None:
    dets = [Detection(0, 1, "zeta", 0.5), Detection(0, 1, "alpha", 0.5), Detection(0, 1, "known", 0.5)]
    page = write_viewer(tmp_path, [ViewerVideo("v", tmp_path / "v.mp4", 2.0, dets, [Segment(0, 1, "gt-only")])],
                        classes=["known"])
    assert _data_block(page)["classes"] == ["known", "alpha", "gt-only", "zeta"]


def test_palette_matches_the_png_plots() -> None:
    plots = pytest.importorskip("lofi.eval.plots")
    from matplotlib.colors import to_hex

    classes = [f"c{i}" for i in range(61)]
    assert viewer_palette(classes) == {k: to_hex(v) for k, v in plots.class_colors(classes).items()}


@pytest.mark.parametrize("bad", [
    dict(duration_sec=0.0), dict(duration_sec=float("nan")),
    dict(detections=[Detection(0.0, float("inf"), "a", 0.5)]), dict(detections=[Detection(0.0, 1.0, "a", float("nan"))]),
])
def test_bad_numbers_are_refused_naming_the_video(tmp_path: Path, bad: dict) -> None:
    fields = dict(video_id="v7", video_path=tmp_path / "v.mp4", duration_sec=2.0, detections=[]) | bad
    with pytest.raises(ValueError, match="'v7'"):
        write_viewer(tmp_path, [ViewerVideo(**fields)])


def test_min_score_outside_0_1_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="min_score"):
        write_viewer(tmp_path, [], min_score=1.5)


def test_many_videos_and_detections_stay_small(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    videos = [ViewerVideo(f"v{i}", tmp_path / f"v{i}.mp4", 120.0, _random_detections(rng, duration_sec=120.0, num=300))
              for i in range(60)]
    page = write_viewer(tmp_path, videos)
    assert page.stat().st_size < 2_000_000
    assert len(_data_block(page)["videos"]) == 60


# ---- A real headless chromium, driven by Playwright (skipped when either is missing).

@pytest.fixture(scope="module")
def browser():
    try:
        from playwright import sync_api
    except ImportError as error:
        pytest.skip(f"playwright is not usable ({error}): pip install playwright (it drives the system chromium)")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.skip(f"no chromium at {CHROMIUM} (set LOFI_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        except Exception as error:  # noqa: BLE001 - any launch failure means no usable browser here
            pytest.skip(f"chromium at {CHROMIUM} did not start: {error}")
        yield browser
        browser.close()


def _open(browser, page_path: Path, *, width_px: int = 1280, height_px: int = 900):
    """A page with console and page errors collected in ``page.errors``."""
    page = browser.new_page(viewport={"width": width_px, "height": height_px})
    page.set_default_timeout(8000)
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(f"console.{msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.goto(page_path.resolve().as_uri())
    page.errors = errors
    return page


def _wait_for_metadata(page) -> None:
    page.wait_for_function("Array.from(document.querySelectorAll('video')).every(v => v.readyState >= 1 || v.error)")
    codes = page.evaluate("Array.from(document.querySelectorAll('video')).map(v => v.error && v.error.code)")
    assert codes == [None] * len(codes), f"chromium could not load the videos (MediaError codes {codes})"


def _visible_bars(page) -> int:
    return page.evaluate("Array.from(document.querySelectorAll('.det')).filter(b => b.offsetParent !== null).length")


@pytest.mark.browser
def test_in_chromium_click_seeks_and_slider_filters(browser, tmp_path: Path) -> None:
    started = time.monotonic()
    videos = _realistic_videos(tmp_path / "videos")
    page_path = write_viewer(tmp_path / "html", videos, classes=CLASSES, title="lofi detect <test>")
    page = _open(browser, page_path)
    _wait_for_metadata(page)
    assert page.evaluate("document.querySelectorAll('video')[0].duration") == pytest.approx(12.0, abs=0.3)

    total = sum(len(v.detections) for v in videos)
    assert _visible_bars(page) == total
    assert page.locator("#shown-count").inner_text().startswith(f"{total} of {total}")

    target = max(videos[1].detections, key=lambda d: d.score)
    index = list(videos[1].detections).index(target)
    page.locator(f"section.video[data-index='1'] .det[data-index='{index}']").click()
    page.wait_for_function("Math.abs(document.querySelectorAll('video')[1].currentTime - %r) < 0.1" % target.start_sec)
    assert page.evaluate("document.querySelectorAll('video')[1].currentTime") == pytest.approx(target.start_sec, abs=0.1)
    assert page.locator("section.video[data-index='1'] .detail").inner_text().startswith(target.label)
    assert page.evaluate("document.querySelectorAll('video')[0].currentTime") == 0  # the other videos stay put

    page.locator("#min-score").fill("0.5")
    expected = sum(d.score >= 0.5 for v in videos for d in v.detections)
    assert 0 < expected < total
    assert _visible_bars(page) == expected
    assert page.locator("#shown-count").inner_text().startswith(f"{expected} of {total}")

    page.locator("section.video[data-index='2'] details.list summary").click()  # the table is built on opening
    page.locator("section.video[data-index='2'] table.detections").wait_for()  # built on the async toggle event
    rows = page.locator("section.video[data-index='2'] tbody tr:visible")
    assert rows.count() == sum(d.score >= 0.5 for d in videos[2].detections)
    rows.first.click()
    first = min((d for d in videos[2].detections if d.score >= 0.5), key=lambda d: d.start_sec)
    page.wait_for_function("Math.abs(document.querySelectorAll('video')[2].currentTime - %r) < 0.1" % first.start_sec)

    page.locator("section.video[data-index='0'] video").focus()  # space toggles play on the focused video
    page.keyboard.press(" ")
    page.wait_for_function("!document.querySelectorAll('video')[0].paused")
    page.keyboard.press(" ")
    page.wait_for_function("document.querySelectorAll('video')[0].paused")

    page.locator("#min-score").fill("0")
    page.evaluate("window.scrollTo(0, 0)")  # the sticky header back on top
    page.screenshot(path=str(tmp_path / "viewer.png"), full_page=True)
    if os.environ.get(SCREENSHOT_ENV):
        shutil.copy(tmp_path / "viewer.png", os.environ[SCREENSHOT_ENV])
    assert (tmp_path / "viewer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.errors == []
    page.close()
    assert time.monotonic() - started < 20


@pytest.mark.browser
def test_in_chromium_edge_cases_load_without_errors(browser, tmp_path: Path) -> None:
    """No detections, a 0.4 s video, 300 detections, HTML in labels, 55 videos on one page."""
    short = write_video(tmp_path / "short.mp4", duration_sec=0.4, fps=10, size_px=16)
    rng = np.random.default_rng(2)
    evil = "<img src=x onerror=alert(1)></script>"
    videos = [ViewerVideo("none", short, 0.4, []), ViewerVideo("short", short, 0.4, [Detection(0.1, 0.3, evil, 0.7)]),
              ViewerVideo("many", short, 0.4, [Detection(0.0, 0.4, evil, 0.5)] * 300, [])]
    videos += [ViewerVideo(f"v{i}", short, 0.4, _random_detections(rng, duration_sec=0.4, num=5)) for i in range(52)]
    page = _open(browser, write_viewer(tmp_path / "html", videos))
    _wait_for_metadata(page)
    assert page.evaluate("document.querySelectorAll('img').length") == 0  # the label stayed text
    assert page.locator("section.video[data-index='1'] .lane-label", has_text=evil).count() == 1
    assert page.locator("section.video[data-index='0'] .empty").count() == 1
    assert _visible_bars(page) == 1 + 300 + 52 * 5
    page.locator("section.video[data-index='1'] .det").click()
    page.wait_for_function("Math.abs(document.querySelectorAll('video')[1].currentTime - 0.1) < 0.1")
    assert page.errors == []
    page.close()
