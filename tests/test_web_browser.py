"""The web page in a real headless Chromium (Selenium + Debian's chromium/chromium-driver) against a
live ``hybridface serve``: enrol two people by drag-and-drop, identify a third photo, rename,
calibrate, and a read-only key that cannot delete. Skips with a reason when no browser is installed
(``scripts/install_browser.sh`` installs one). ``HYBRIDFACE_SCREENSHOTS=DIR`` keeps a screenshot
of each screen there (``docs/results/web/`` holds the committed ones)."""

from __future__ import annotations

import base64
import os
import shutil
import sys
from pathlib import Path

import pytest

from hybridface.gallery.keys import KeyStore

sys.path.insert(0, str(Path(__file__).parent))
from service_server import Server  # noqa: E402
from watch_data import frames_of  # noqa: E402

pytestmark = pytest.mark.timeout(300)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install 'hybridface[dev]')")
    if not CHROMIUM or not DRIVER:
        pytest.skip("no chromium/chromedriver on this machine (bash scripts/install_browser.sh installs them)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1000,1300",
              "--disable-extensions", "--no-first-run"):
        opts.add_argument(a)
    try:
        d = webdriver.Chrome(service=Service(DRIVER), options=opts)
    except Exception as exc:  # selenium's own exception types; a browser that will not start here
        pytest.skip(f"chromium did not start: {str(exc).splitlines()[0]}")
    d.set_page_load_timeout(60)
    yield d
    d.quit()


@pytest.fixture(scope="module")
def site(tmp_path_factory, dataset):
    vid = dataset("vidtimit14")
    db = tmp_path_factory.mktemp("web") / "g.db"
    ks = KeyStore(db, create=True)
    keys = {s: ks.create(f"{s}-key", scope=s)[1] for s in ("read", "admin")}
    server = Server(db, "--model", "general")
    yield server, keys, vid
    server.stop()
    assert "Traceback" not in server.log()


def _shot(d, name: str) -> None:
    out = os.environ.get("HYBRIDFACE_SCREENSHOTS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        d.save_screenshot(str(Path(out) / f"{name}.png"))


def _wait(d, cond, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(d, timeout).until(lambda _: cond())


def _use_key(d, key: str) -> None:
    from selenium.webdriver.common.by import By

    d.find_element(By.ID, "key-input").send_keys(key)
    d.find_element(By.ID, "key-use").click()


def _drop(d, zone_id: str, paths: list[Path]) -> None:
    """A real drop event on the zone, carrying the files (what a drag from the desktop delivers)."""
    files = [[p.name, base64.b64encode(p.read_bytes()).decode()] for p in paths]
    d.execute_script("""
        const [zoneId, files] = arguments;
        const dt = new DataTransfer();
        for (const [name, b64] of files) {
          const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          dt.items.add(new File([bytes], name, { type: "image/jpeg" }));
        }
        const zone = document.getElementById(zoneId);
        zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: dt, bubbles: true, cancelable: true }));
        zone.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
    """, zone_id, files)


def _rows(d) -> dict[str, str]:
    """name → template count of the identities table, read in one script (the table may re-render)."""
    return d.execute_script("""
        const out = {};
        for (const tr of document.querySelectorAll("#identities tbody tr")) out[tr.dataset.name] = tr.cells[1].textContent;
        return out;""")


def test_enrol_identify_and_roles_in_a_browser(browser, site):
    from selenium.webdriver.common.by import By

    d = browser
    server, keys, vid = site
    d.get(server.url + "/")
    _shot(d, "01-no-key")

    # a wrong key: the service's 401 is shown as it is
    _use_key(d, "hf_not-a-real-key")
    err = _wait(d, lambda: d.find_element(By.ID, "error").text)
    assert err.startswith("401 unauthorized: invalid or revoked API key")
    _shot(d, "02-wrong-key")

    # admin: enrol two people by drag-and-drop
    _use_key(d, keys["admin"])
    _wait(d, lambda: "(admin)" in d.find_element(By.ID, "whoami").text)
    for person in ("fcft0", "fjem0"):
        name = d.find_element(By.ID, "enrol-name")
        name.clear()
        name.send_keys(person)
        _drop(d, "enrol-drop", frames_of(vid / person, end=0.6, step=30))
        _wait(d, lambda: person in _rows(d))
    rows = _rows(d)
    assert set(rows) == {"fcft0", "fjem0"} and all(int(n) >= 3 for n in rows.values())
    _shot(d, "03-enrolled")

    # identify a third photo (a later frame, never enrolled) through the file chooser
    probe = frames_of(vid / "fjem0", start=0.8)[5]
    d.execute_script("document.getElementById('identify-files').hidden = false;")
    d.find_element(By.ID, "identify-files").send_keys(str(probe))
    d.execute_script("document.getElementById('identify-files').hidden = true;")
    faces = _wait(d, lambda: d.find_elements(By.CSS_SELECTOR, "#identify-faces li.face"))
    assert faces[0].find_element(By.CSS_SELECTOR, ".name").text == "fjem0"
    assert "candidates: fjem0" in faces[0].text
    assert d.execute_script("return document.getElementById('identify-canvas').width") == 256
    d.execute_script("document.getElementById('identify-section').scrollIntoView()")
    _shot(d, "04-identified")

    # admin: calibrate and rename
    d.find_element(By.ID, "calibrate").click()
    assert "threshold" in _wait(d, lambda: d.find_element(By.ID, "notice").text)
    d.execute_script("window.prompt = () => 'fjem0-renamed'; window.scrollTo(0, 0);")
    d.find_element(By.CSS_SELECTOR, "tr[data-name='fjem0'] button:not(.danger)").click()
    _wait(d, lambda: "fjem0-renamed" in _rows(d))
    _shot(d, "05-admin")

    # a read-only key: Delete and enrolment are disabled, and the service refuses a forced delete
    d.find_element(By.ID, "key-forget").click()
    _use_key(d, keys["read"])
    _wait(d, lambda: "(read)" in d.find_element(By.ID, "whoami").text and _rows(d))
    delete = d.find_element(By.CSS_SELECTOR, "tr[data-name='fcft0'] button.danger")
    assert not delete.is_enabled()
    assert "disabled" in d.find_element(By.ID, "enrol-drop").get_attribute("class")
    d.execute_script("window.confirm = () => true; arguments[0].disabled = false; arguments[0].click();", delete)
    err = _wait(d, lambda: d.find_element(By.ID, "error").text)
    assert err.startswith("403 forbidden: API key 'read-key' has scope 'read'; this route needs 'admin'")
    assert "fcft0" in _rows(d)
    assert d.execute_script("return document.getElementById('identify-canvas').width") == 0, "admin's results cleared"
    d.execute_script("arguments[0].disabled = true;", delete)
    _shot(d, "06-read-only")

    # the key was never in the address bar, and it lives in session storage only
    assert d.current_url == server.url + "/"
    assert d.execute_script("return sessionStorage.getItem('hybridface.apiKey')") == keys["read"]
    assert d.execute_script("return localStorage.length") == 0
