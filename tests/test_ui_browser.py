"""The search page in a real browser: headless Chromium (Debian's chromium + chromium-driver) driven by Selenium.

One Flow started as a user starts it (`mlcl serve`: flows/flow.yml, the
bundled model), a small shapes gallery indexed into it; the page served by
that Flow at the URL its "ready" line prints. The test does what a user does:
upload a reference, type a caption, read the grid, click a result to make it
the next reference, step back through the history, change the limit, read
the per-level view, and meets the errors a user can meet (a corrupt upload,
an image the Flow refuses, a Flow that went away). What the page shows is
checked against the Flow's own HTTP answer for the same query.

A screenshot of the page with results is written to
outputs/test-artifacts/search-page.png (or $MLCL_TEST_ARTIFACTS).

Without chromium/chromedriver on PATH this test is skipped, unless
MLCL_REQUIRE_BROWSER is set (CI sets it: .ci/run installs them).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from helpers import REPO_ROOT, subprocess_env

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

if not (CHROMIUM and CHROMEDRIVER):
    reason = "needs chromium and chromedriver (apt-get install -y chromium chromium-driver)"
    if os.environ.get("MLCL_REQUIRE_BROWSER"):
        raise RuntimeError(f"MLCL_REQUIRE_BROWSER is set but the browser test {reason}")
    pytest.skip(reason, allow_module_level=True)

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

WAIT_S = 30
START_TIMEOUT = 240  # s: `mlcl serve` on a loaded 2-core box (an idle start is ~10 s)

pytestmark = pytest.mark.slow  # a Flow and a headless browser


def artifact_dir() -> Path:
    folder = Path(os.environ.get("MLCL_TEST_ARTIFACTS") or REPO_ROOT / "outputs" / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def start_browser(profile: str):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, to check it holds no error
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)


@pytest.fixture()
def browser():
    profile = tempfile.mkdtemp(prefix="mlcl-chromium-")
    driver = start_browser(profile)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver, condition, what: str):
    return WebDriverWait(driver, WAIT_S).until(lambda d: condition(d), message=f"page: {what}")


def cards(driver, selector: str, root=None) -> list[str]:
    """The ids of the cards `selector` finds (under `root`), read in one go (the grid may be re-rendering)."""
    return driver.execute_script(
        "return Array.from((arguments[1] || document).querySelectorAll(arguments[0])).map(e => e.dataset.id)", selector, root)


def message(driver) -> str:
    box = driver.find_element(By.ID, "message")
    return box.text if box.is_displayed() else ""


#: Drops a file (base64, name) on the drop zone as a user's drag and drop does (a DataTransfer with a File).
DROP_FILE = """
const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
const transfer = new DataTransfer();
transfer.items.add(new File([bytes], arguments[1], {type: "image/png"}));
document.getElementById("dropzone").dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
"""


def searches(driver) -> int:
    """How many searches the page has finished (it counts them in body[data-searches])."""
    return int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-searches") or 0)


def thumbnail_requests(driver) -> list[str]:
    """The URLs of the thumbnail requests the page made since the last clear (the browser's own resource timing)."""
    return driver.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)"
                                 ".filter((n) => n.includes('/ui/thumbnail'))")


def shown_thumbnails(driver, selector: str) -> dict[str, str | None]:
    """{card id: its image's src, or None when it says "no thumbnail"} once no card of `selector` is still loading."""
    loading = ", ".join(f"{one.strip()} .no-thumb.loading" for one in selector.split(","))
    wait_for(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, loading), "thumbnails loaded")
    return dict(driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map((c) => "
        "[c.dataset.id, c.querySelector('img') ? c.querySelector('img').src : null])", selector))


def search_and_wait(driver) -> list[str]:
    """Click Search, wait until that search has finished (results or a message); the grid's ids."""
    done = searches(driver)
    driver.find_element(By.ID, "search-button").click()
    wait_for(driver, lambda d: searches(d) > done, "search finished")
    return cards(driver, "#results .card")


def flow_with_facet(tmp: Path) -> Path:
    """flows/flow.yml whose page offers the facet `category` (its uses made absolute, written to `tmp`)."""
    import yaml

    config = yaml.safe_load((REPO_ROOT / "flows" / "flow.yml").read_text())
    config["gateway"]["uses_with"] = {"ui_settings": {"facet": "category"}}
    for executor in config["executors"]:
        executor["uses"] = str((REPO_ROOT / "flows" / executor["uses"]).resolve())
    path = tmp / "flow.facet.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def serve(tmp: Path) -> tuple[subprocess.Popen, str, int, Path]:
    """`mlcl serve` on free ports; (process, the search page URL from its ready line, gRPC port, log)."""
    from mlcl_cli.flows import free_port

    grpc, http = free_port(), free_port()
    log = tmp / "serve.log"
    env = subprocess_env()
    env.pop("JINA_LOG_LEVEL", None)  # as a user runs it (the test harness quiets jina its own way)
    proc = subprocess.Popen([sys.executable, "-m", "mlcl_cli", "serve", "--grpc-port", str(grpc), "--http-port", str(http),
                             "--workspace", str(tmp / "workspace"), "--device", "cpu", "--flow", str(flow_with_facet(tmp))],
                            cwd=tmp, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)
    started = time.monotonic()
    while time.monotonic() - started < START_TIMEOUT:
        ready = [line for line in log.read_text().splitlines() if "ready in" in line]
        if ready:
            page = re.search(r"search page: (http://\S+/ui/)", ready[0])
            assert page, f"the ready line names no search page: {ready[0]}"
            return proc, page.group(1), grpc, log
        if proc.poll() is not None:
            raise AssertionError(f"mlcl serve ended ({proc.returncode}):\n{log.read_text()}")
        time.sleep(0.3)
    proc.kill()
    raise AssertionError(f"mlcl serve not ready after {START_TIMEOUT} s:\n{log.read_text()}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.timeout(420)
def test_search_page_in_chromium(tmp_path, browser):
    t0 = time.monotonic()
    from docarray import DocList

    from mlcl_executor.image_source import file_to_data_uri
    from mlcl_executor.schemas import GalleryDoc
    from mlcl_cli.client import grpc_client, http_post

    from mlcl.data.shapes import ShapesDataset, ensure_shapes

    ds = ShapesDataset(ensure_shapes(tmp_path / "shapes", split="test", n=50, workers=1), "test")
    query = ds.triplets[0]
    ref_file = tmp_path / "reference.png"
    ref_file.write_bytes(ds.image_path(query["reference"]).read_bytes())
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"this is not the rest of a PNG file" * 20)
    tiff = tmp_path / "reference.tif"  # a browser does not show TIFF; the Flow reads it
    from PIL import Image

    Image.open(ref_file).save(tiff, format="TIFF")
    svg = tmp_path / "drawing.svg"  # a browser shows it; the encoder's policy (raster formats only) refuses it
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64" fill="red"/></svg>')

    proc, page_url, grpc, log = serve(tmp_path)
    try:
        t_flow = time.monotonic()
        client = grpc_client(port=grpc)
        category = {n: ("odd" if i % 2 else "even") for i, n in enumerate(ds.gallery)}  # a tag for the page's facet
        docs = DocList[GalleryDoc](GalleryDoc(id=n, image=ds.image_path(n).read_bytes(), tags={"category": category[n]})
                                   for n in ds.gallery)
        assert not [d.error for d in client.post("/index", docs, return_type=DocList[GalleryDoc]) if d.error]
        base = page_url[: -len("/ui/")]

        # The page and its files come from the Flow, with a policy that forbids loading anything else.
        with urllib.request.urlopen(base + "/ui/") as page:
            csp = page.headers["Content-Security-Policy"]
            html = page.read().decode()
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
        assert "http://" not in html and "https://" not in html
        # ... beside the gateway's usual API: /docs (from the Flow itself, no CDN); no CORS grant to other origins.
        with urllib.request.urlopen(base + "/docs") as docs_page:
            assert docs_page.status == 200 and "cdn" not in docs_page.read().decode().lower()
        request = urllib.request.Request(base + "/count", data=b'{"data": []}', method="POST",
                                         headers={"Content-Type": "application/json", "Origin": "http://elsewhere.example"})
        with urllib.request.urlopen(request) as answer:
            assert "access-control-allow-origin" not in {k.lower() for k in answer.headers.keys()}

        # The API reference (/docs, the page's "API" link) renders offline, from the Flow's /openapi.json.
        browser.get(base + "/docs")
        wait_for(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true", "docs")
        endpoints = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".endpoint h2")]
        assert "POST /search" in endpoints and "POST /index" in endpoints and browser.title == "mlcl API"

        browser.get(page_url)
        wait_for(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true", "ready")
        errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors  # e.g. no /favicon.ico 404
        assert browser.find_element(By.ID, "status").text == f"{len(ds.gallery)} gallery images"
        examples = cards(browser, "#examples .card")
        assert len(examples) == 12 and set(examples) <= set(ds.gallery)
        # the strip's thumbnails: one request for its 12 cards, the Flow's data URIs shown as they came
        strip = shown_thumbnails(browser, "#examples .card")
        assert strip == http_post(base, "/ui/thumbnails", {"ids": examples})
        assert thumbnail_requests(browser) == [base + "/ui/thumbnails"]
        assert len(browser.find_elements(By.CSS_SELECTOR, "#suggestions button")) >= 3

        # 1. upload a reference, type the modification, get the grid.
        browser.find_element(By.ID, "file-input").send_keys(str(ref_file))
        wait_for(browser, lambda d: d.find_element(By.ID, "reference-label").text == "reference.png", "uploaded reference")
        browser.find_element(By.ID, "caption").send_keys(query["caption"])
        browser.execute_script("performance.clearResourceTimings()")
        fused = search_and_wait(browser)
        assert not message(browser), message(browser)
        assert len(fused) == 10
        target = ds.scene_key(query["target"])
        assert any(ds.scene_key(i) == target for i in fused), (query, fused)
        first = browser.find_element(By.CSS_SELECTOR, "#results .card")
        assert first.find_element(By.CSS_SELECTOR, ".rank").text == "#1"
        # the thumbnails of all its cards (fused and per level) come from the Flow by gallery id in ONE request
        thumbs = shown_thumbnails(browser, "#results .card, #levels-rows .card")
        assert thumbnail_requests(browser) == [base + "/ui/thumbnails"]  # not one per card
        assert thumbs == http_post(base, "/ui/thumbnails", {"ids": list(thumbs)}) and len(thumbs) > len(fused)
        img = first.find_element(By.CSS_SELECTOR, "img")
        assert img.get_attribute("src") == thumbs[fused[0]] and thumbs[fused[0]].startswith("data:image/png;base64,")
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 0
        scores = [float(e.text) for e in browser.find_elements(By.CSS_SELECTOR, "#results .card .score")]
        assert scores == sorted(scores, reverse=True) and -1 <= scores[-1] <= scores[0] <= 1

        # ... the same answer as the Flow's HTTP API gives for this query, level by level.
        api = http_post(base, "/search", {"data": [{"image": file_to_data_uri(ref_file), "text": query["caption"]}],
                                          "parameters": {"limit": 10, "levels": True}})["data"][0]
        assert fused == [m["id"] for m in api["matches"]]
        rows = browser.find_elements(By.CSS_SELECTOR, "#levels-rows .level")
        assert [r.get_attribute("data-level") for r in rows] == ["low", "mid", "high"]
        for row, level in zip(rows, api["levels"]):
            assert cards(browser, ".card", row) == [m["id"] for m in level["matches"]]
        shown = artifact_dir() / "search-page.png"
        browser.save_screenshot(str(shown))
        assert shown.stat().st_size > 10_000

        # 2. click a result: it becomes the next reference; a suggested caption runs the next query.
        pick = fused[1]
        browser.find_element(By.CSS_SELECTOR, f'#results .card[data-id="{pick}"]').click()
        wait_for(browser, lambda d: d.find_element(By.ID, "reference-id").get_attribute("data-id") == pick, "result as reference")
        assert browser.find_element(By.ID, "reference-img").get_attribute("src") == thumbs[pick]  # its thumbnail, shown
        assert browser.find_element(By.ID, "caption").get_attribute("value") == ""
        chip = browser.find_element(By.CSS_SELECTOR, "#suggestions button")
        chip.click()
        wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#history li")) == 2, "second step")
        second = cards(browser, "#results .card")
        assert pick not in second  # the reference came from the gallery: it is left out of its own results
        assert browser.find_element(By.CSS_SELECTOR, "#history li.current").get_attribute("data-step") == "1"

        # 3. step back through the history: the first query's reference, caption and results return.
        browser.find_element(By.ID, "back-button").click()
        wait_for(browser, lambda d: d.find_element(By.ID, "reference-label").text == "reference.png", "back")
        assert cards(browser, "#results .card") == fused
        assert browser.find_element(By.ID, "caption").get_attribute("value") == query["caption"]

        # 4. the limit control.
        limit = browser.find_element(By.ID, "limit")
        limit.send_keys(Keys.CONTROL, "a")  # (not clear(): that fires `change` with an empty field)
        limit.send_keys("5")
        done = searches(browser)
        browser.find_element(By.ID, "caption").click()  # leaving the field fires `change`: the query runs again
        wait_for(browser, lambda d: searches(d) > done, "search with the new limit")
        assert cards(browser, "#results .card") == fused[:5]

        # 5. text is shown as text, never as markup.
        caption = browser.find_element(By.ID, "caption")
        caption.clear()
        caption.send_keys('make the <b id="x">red</b> circle blue')
        search_and_wait(browser)
        assert '<b id="x">red</b>' in browser.find_element(By.CSS_SELECTOR, "#history li.current").text
        assert not browser.find_elements(By.ID, "x")

        # 6. the facet (settings.facet: category): a chip narrows the results to one value, as the API's filter does;
        # "More results" adds the next page of the same query and filter.
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '#facet-values button[data-value=\'"odd"\']'), "facet chips")
        done = searches(browser)
        browser.find_element(By.CSS_SELECTOR, '#facet-values button[data-value=\'"odd"\']').click()
        wait_for(browser, lambda d: searches(d) > done, "search narrowed by the facet")
        narrowed = cards(browser, "#results .card")
        query_doc = {"image": file_to_data_uri(ref_file), "text": 'make the <b id="x">red</b> circle blue'}
        only_odd = {"category": {"$eq": "odd"}}
        api = http_post(base, "/search", {"data": [query_doc], "parameters": {"limit": 10, "filter": only_odd}})["data"][0]
        api_ids = [m["id"] for m in api["matches"]]
        assert narrowed == api_ids[:5] and narrowed and all(category[i] == "odd" for i in narrowed)
        done = searches(browser)
        shown_thumbnails(browser, "#results .card, #levels-rows .card")
        browser.execute_script("performance.clearResourceTimings()")
        browser.find_element(By.ID, "more-button").click()
        wait_for(browser, lambda d: searches(d) > done, "more results")
        assert cards(browser, "#results .card") == api_ids[:10]
        more_thumbs = shown_thumbnails(browser, "#results .card")
        assert thumbnail_requests(browser) == [base + "/ui/thumbnails"]  # the new cards only, in one request
        assert all(more_thumbs[i] for i in api_ids[:10])
        ranks = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#results .card .rank")]
        assert ranks == [f"#{r}" for r in range(1, 11)]
        done = searches(browser)
        browser.find_element(By.CSS_SELECTOR, '#facet-values button[data-value=""]').click()  # "all" again
        wait_for(browser, lambda d: searches(d) > done, "search without the facet")
        assert any(category[i] == "even" for i in cards(browser, "#results .card"))

        # 6b. a TIFF reference: no preview in the browser, the Flow reads it.
        browser.find_element(By.ID, "file-input").send_keys(str(tiff))
        wait_for(browser, lambda d: d.find_element(By.ID, "reference-label").text == "reference.tif", "tiff reference")
        assert browser.find_element(By.ID, "reference-no-preview").is_displayed()
        from_tiff = search_and_wait(browser)
        assert not message(browser) and len(from_tiff) == 5, message(browser)

        # 6c. a corrupt upload: a message in place, the reference is kept.
        browser.find_element(By.ID, "file-input").send_keys(str(corrupt))
        wait_for(browser, message, "corrupt upload message")
        assert "corrupt.png could not be read as an image" in message(browser) and "TIFF" in message(browser)
        assert browser.find_element(By.ID, "reference-label").text == "reference.tif"

        # 7. an image the browser reads but the encoder's policy refuses: the Flow's reason, in place.
        browser.find_element(By.ID, "file-input").send_keys(str(svg))
        wait_for(browser, lambda d: d.find_element(By.ID, "reference-label").text == "drawing.svg", "svg reference")
        search_and_wait(browser)
        assert "The Flow could not use this query: document" in message(browser), message(browser)
        t_flow_done = time.monotonic()
        stop(proc)
        assert proc.returncode == 0, log.read_text()
        noise = [line for line in log.read_text().splitlines() if not line.startswith("mlcl serve: ")]
        assert not noise, "mlcl serve printed lines that are not its own while the page was used:\n" + "\n".join(noise)
    finally:
        stop(proc)

    # 8. drag and drop a reference; the Flow is gone: the page says so instead of going blank.
    browser.execute_script(DROP_FILE, base64.b64encode(ref_file.read_bytes()).decode(), "dropped.png")
    wait_for(browser, lambda d: d.find_element(By.ID, "reference-label").text == "dropped.png", "dropped reference")
    browser.find_element(By.ID, "search-button").click()
    wait_for(browser, lambda d: "Cannot reach the Flow" in message(d), "unreachable Flow message")
    assert browser.find_element(By.ID, "results").find_elements(By.CSS_SELECTOR, ".card")  # last results stay
    print(f"\nbrowser test: Flow start {t_flow - t0:.1f} s, page checks {t_flow_done - t_flow:.1f} s, "
          f"total {time.monotonic() - t0:.1f} s; screenshot {shown}; load {os.getloadavg()[0]:.2f}")
