"""The browser side of the console tests: one headless Chromium for all
scenarios, its console log, and waiting helpers."""

import os
import re
import time

from selenium import webdriver
from selenium.common.exceptions import (NoSuchElementException, StaleElementReferenceException,
                                        WebDriverException)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

SCENARIOS = []   # (name, fn(browser))
SHOTS = None     # directory for screenshots


class Skip(Exception):
    pass


def scenario(fn):
    SCENARIOS.append((fn.__name__, fn))
    return fn


class Browser:
    def __init__(self):
        o = webdriver.ChromeOptions()
        o.binary_location = "/usr/bin/chromium"
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--window-size=1280,900", "--no-first-run", "--disable-extensions",
                  "--disable-background-networking", "--disable-sync", "--lang=en-US"):
            o.add_argument(a)
        o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
        self.d.set_page_load_timeout(20)
        self.allowed = []
        self.entries = []

    def quit(self):
        try:
            self.d.quit()
        except Exception:
            pass

    # -- between scenarios
    def reset(self):
        try:
            self.d.get("about:blank")
            self.d.set_window_size(1280, 900)
            self.d.get_log("browser")  # drain
        except WebDriverException:
            pass
        self.allowed = []
        self.entries = []

    def allow(self, url_part, status):
        """A network error this scenario provokes on purpose."""
        self.allowed.append((url_part, str(status)))

    def logs(self):
        """Every browser log entry of this scenario so far."""
        self.entries += self.d.get_log("browser")
        return self.entries

    def console_errors(self):
        bad = []
        for entry in self.logs():
            if entry.get("level") != "SEVERE":
                continue
            msg = entry.get("message", "")
            m = re.search(r"status of (\d+)", msg)
            if entry.get("source") == "network" and m and any(
                    part in msg and m.group(1) == st for part, st in self.allowed):
                continue
            bad.append(msg)
        return bad

    # -- pages
    def open(self, engine, route="#/cycles"):
        self.d.get(engine.admin_url + "/" + route)

    def grant_clipboard(self, engine):
        self.d.execute_cdp_cmd("Browser.grantPermissions", {
            "origin": engine.admin_url,
            "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})

    def js(self, script, *args):
        return self.d.execute_script(script, *args)

    def clipboard(self):
        return self.d.execute_async_script(
            "const done = arguments[0];"
            "navigator.clipboard.readText().then(done, (e) => done('ERROR ' + e.message));")

    def shot(self, name, width=None, height=None):
        if not SHOTS:
            return None
        path = os.path.join(SHOTS, re.sub(r"[^\w.-]+", "_", name) + ".png")
        try:
            if width:
                self.d.set_window_size(width, height or 900)
            self.d.save_screenshot(path)
            return path
        except WebDriverException:
            return None

    # -- finding and waiting
    def find(self, css, within=None):
        return (within or self.d).find_element(By.CSS_SELECTOR, css)

    def finds(self, css, within=None):
        return (within or self.d).find_elements(By.CSS_SELECTOR, css)

    def xpath(self, xp):
        return self.d.find_element(By.XPATH, xp)

    def wait(self, fn, timeout=10, msg="condition"):
        deadline = time.time() + timeout
        last = None
        while True:
            try:
                last = fn()
                if last:
                    return last
            except (NoSuchElementException, StaleElementReferenceException):
                last = None
            if time.time() >= deadline:
                raise AssertionError("timed out after %ss waiting for %s (last: %r)" % (timeout, msg, last))
            time.sleep(0.1)

    def wait_css(self, css, timeout=10):
        return self.wait(lambda: (self.finds(css) or [None])[0], timeout, "element " + css)

    def wait_text(self, css, text, timeout=10):
        def f():
            for e in self.finds(css):
                if text in e.text:
                    return e
            return None
        return self.wait(f, timeout, "%r in %s" % (text, css))

    def card(self, heading):
        """The article/section whose h2 is exactly `heading`."""
        return self.xpath("//*[self::article or self::section][.//h2[normalize-space(.)=%s]]" % _xq(heading))

    def button(self, label, within=None):
        return (within or self.d).find_element(By.XPATH, ".//button[normalize-space(.)=%s]" % _xq(label))


def _xq(s):
    if "'" not in s:
        return "'%s'" % s
    return "concat('%s')" % s.replace("'", "', \"'\", '")
