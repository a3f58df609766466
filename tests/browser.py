"""A real browser for UI tests: Debian's headless Chromium driven by Selenium.

The browser and its driver come from the system's packages (`chromium`, `chromium-driver`;
`.ci/run` installs them with apt-get), never downloaded at test time: Selenium is pointed at
the driver on PATH, so its driver manager stays offline. Where either is missing, the tests
that need it are skipped with one line saying what to install.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVER = "chromedriver"
INSTALL = "apt-get install chromium chromium-driver"


def missing() -> str | None:
    """Why no browser test can run here, or None when one can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if not any(shutil.which(b) for b in BROWSERS):
        return f"no Chromium on PATH ({INSTALL})"
    if shutil.which(DRIVER) is None:
        return f"no {DRIVER} on PATH ({INSTALL})"
    return None


@contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A headless Chromium window of `width` x `height`, quit on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    browser = next(path for b in BROWSERS if (path := shutil.which(b)))
    options.binary_location = browser
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",  # small /dev/shm in containers
        "--disable-gpu",
        "--no-first-run",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    service = Service(executable_path=shutil.which(DRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, condition: Callable[[Any], Any], what: str, timeout: float = 60) -> Any:
    """Polls `condition(driver)` until it is truthy; fails naming `what` and saving nothing."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.25).until(condition)
    except TimeoutException:
        raise AssertionError(f"the page never showed {what} within {timeout:.0f} s") from None


def screenshot(driver: Any, path: Path) -> Path:
    driver.save_screenshot(str(path))
    return path
