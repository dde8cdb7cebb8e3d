"""A headless Chromium driven by Selenium, from Debian's `chromium` and `chromium-driver`
(make setup installs both). The driver's path is given, so Selenium Manager never runs
and nothing is downloaded."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@contextmanager
def headless_chromium() -> Iterator[webdriver.Chrome]:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            raise AssertionError(f"{path} missing: run `make setup` (Debian package {package})")
    # The profile and Chromium's own temp files go in a directory removed afterwards.
    with tempfile.TemporaryDirectory(prefix="pgha-chromium-") as tmp:
        options = Options()
        options.binary_location = str(CHROMIUM)
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
            options.add_argument(arg)  # --no-sandbox: tests run as root
        options.add_argument(f"--user-data-dir={tmp}/profile")
        service = Service(executable_path=str(CHROMEDRIVER), env={**os.environ, "TMPDIR": tmp})
        driver = webdriver.Chrome(service=service, options=options)
        try:
            yield driver
        finally:
            driver.quit()
