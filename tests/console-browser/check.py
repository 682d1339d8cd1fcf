"""The operator console in a real browser: headless Chromium driven by
Selenium against `dol up` (started by tests/e2e/console.rs).

Environment: DOL_GECKODRIVER (path; when set, the main phase also runs
every page in headless Firefox ESR), DOL_PHASE (`main`: empty states, every page and action, phone
width; `provider-down`: every page again after the test stopped one
provider), DOL_BASE_URL, DOL_ADMIN_TOKEN, DOL_VIEWER_TOKEN, DOL_API_KEY,
DOL_ALERTMANAGER_TOKEN, DOL_FIRING_JSON (path), DOL_ARTIFACTS (screenshots).
Prints "all checks passed" at the end; any failure raises.
"""

import json
import os
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.firefox.service import Service as FirefoxService
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

BASE = os.environ["DOL_BASE_URL"].rstrip("/")
ADMIN = os.environ["DOL_ADMIN_TOKEN"]
VIEWER = os.environ["DOL_VIEWER_TOKEN"]
API_KEY = os.environ["DOL_API_KEY"]
AM_TOKEN = os.environ["DOL_ALERTMANAGER_TOKEN"]
FIRING = os.environ["DOL_FIRING_JSON"]
ARTIFACTS = os.environ["DOL_ARTIFACTS"]


def http(method, path, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("content-type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, json.loads(res.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def requests_counted(enough):
    """The last hour's metrics once their request count is `enough`: the rows of a
    key without limits trail its answers by up to 20 ms (README "What a crash can
    lose"), so the count catches up a moment later."""
    deadline = time.monotonic() + 10
    while True:
        _, metrics = http("GET", "/api/metrics?window=1h")
        if enough(metrics["totals"]["requests"]):
            return metrics
        assert time.monotonic() < deadline, metrics
        time.sleep(0.01)


def ofrep(flag):
    status, body = http(
        "POST",
        "/ofrep/v1/evaluate/flags/" + flag,
        {"context": {"targetingKey": "user-1"}},
    )
    assert status == 200, (status, body)
    return body["variant"]


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


GECKODRIVER = os.environ.get("DOL_GECKODRIVER", "")


def firefox():
    """Headless Firefox ESR over WebDriver BiDi, which reports its script
    errors and console messages as they happen (Firefox has no get_log)."""
    opts = webdriver.FirefoxOptions()
    opts.binary_location = "/usr/bin/firefox-esr"
    opts.add_argument("-headless")
    opts.add_argument("--width=1280")
    opts.add_argument("--height=1000")
    opts.enable_bidi = True
    driver = webdriver.Firefox(service=FirefoxService(GECKODRIVER), options=opts)
    errors = []
    driver.script.add_javascript_error_handler(lambda e: errors.append("script error: " + e.text))
    driver.script.add_console_message_handler(
        lambda e: errors.append("console." + e.level + ": " + e.text) if e.level == "error" else None
    )
    return driver, errors


class Console:
    def __init__(self, driver, js_errors=None):
        self.d = driver
        # Firefox: errors collected over BiDi; Chromium: its browser log.
        self.js_errors = js_errors
        # Pages re-render on refresh: an element found a moment ago may be gone.
        self.wait = WebDriverWait(
            driver, 20, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
        )

    def go(self, path):
        self.d.get(BASE + path)

    def text(self, css):
        return self.wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, css))).text

    def wait_text(self, css, predicate, what):
        try:
            self.wait.until(lambda d: predicate(d.find_element(By.CSS_SELECTOR, css).text))
        except TimeoutException:
            found = self.d.find_elements(By.CSS_SELECTOR, css)
            raise AssertionError(f"{what}: {css} is {[e.text for e in found]}") from None

    def sign_in(self, token):
        self.go("/admin/dol")
        field = self.wait.until(EC.visibility_of_element_located((By.ID, "token")))
        field.clear()
        field.send_keys(token)
        self.d.find_element(By.ID, "sign-in-button").click()

    def choose(self, select_id, value):
        """Picks `value` in a select whose change re-renders the page, and
        waits for the new page (the old select goes stale)."""
        element = self.wait.until(EC.visibility_of_element_located((By.ID, select_id)))
        if element.get_attribute("value") == value:
            return
        Select(element).select_by_value(value)
        self.wait.until(EC.staleness_of(element))

    def shot(self, name):
        self.d.save_screenshot(os.path.join(ARTIFACTS, name + ".png"))

    def console_errors(self, allowed=()):
        """Browser console errors since the last call, minus `allowed` substrings."""
        if self.js_errors is not None:
            found, self.js_errors[:] = list(self.js_errors), []
            return [m for m in found if not any(a in m for a in allowed)]
        logs = self.d.get_log("browser")
        return [
            e["message"]
            for e in logs
            if e["level"] == "SEVERE" and not any(a in e["message"] for a in allowed)
        ]

    def no_console_errors(self, step, allowed=()):
        errors = self.console_errors(allowed)
        assert not errors, f"{step}: browser console errors: {errors}"


def admin_flow(c):
    # Wrong token: the form again with an error, and no cookie.
    c.sign_in("not-the-token")
    assert "not valid" in c.text(".error"), "wrong token shows an error"
    assert not c.d.get_cookies(), f"no cookie after a wrong token: {c.d.get_cookies()}"
    assert ADMIN not in c.d.page_source
    # The refused sign-in answers 401, which Chromium logs as a failed load.
    c.no_console_errors("wrong token", allowed=("401",))
    print("ok: wrong token refused")

    c.sign_in(ADMIN)
    c.wait_text("#health-status", lambda t: t == "HEALTHY", "health status")
    _, health = http("GET", "/api/health")
    assert c.text("#health-score") == str(health["systemHealth"]["score"]), "the real score"
    cookie = c.d.get_cookie("dol_session")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
    assert ADMIN not in c.d.page_source, "the admin token is not in the page"
    assert ADMIN not in c.d.current_url
    stored = c.d.execute_script("return JSON.stringify(localStorage) + JSON.stringify(sessionStorage)")
    assert ADMIN not in stored
    assert "Last refreshed" in c.text("#refresh-status")
    transferred = c.d.execute_script(
        "return performance.getEntries().reduce((n, e) => n + (e.transferSize || 0), 0)"
    )
    assert 0 < transferred < 150_000, f"landing page transferred {transferred} bytes"
    # Keyboard: the skip link first, then the navigation.
    c.d.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert c.d.switch_to.active_element.text == "Skip to content"
    c.d.switch_to.active_element.send_keys(Keys.TAB)
    assert c.d.switch_to.active_element.text == "Overview"
    c.shot("overview")
    c.no_console_errors("overview")
    print("ok: signed in, HEALTHY, score", health["systemHealth"]["score"])

    c.go("/admin/dol/production-health?refresh=5")
    c.wait_text("#health-status", lambda t: t == "HEALTHY", "production health")
    # Emergency override from the page, shown in the status, then back to automatic.
    c.d.find_element(By.CSS_SELECTOR, 'button.action[data-emergency="on"]').click()
    c.wait.until(EC.alert_is_present()).accept()
    c.wait_text("#health-emergency", lambda t: t.startswith("ACTIVE"), "emergency forced on")
    c.d.find_element(By.CSS_SELECTOR, 'button.action[data-emergency="auto"]').click()
    c.wait.until(EC.alert_is_present()).accept()
    c.wait_text("#health-emergency", lambda t: t == "off", "emergency back to automatic")
    c.wait_text("#health-status", lambda t: t == "HEALTHY", "healthy again")
    c.wait_text("#refresh-status", lambda t: "every 5 s" in t, "configurable refresh")
    c.shot("production-health")
    c.no_console_errors("production health")
    # A failing refresh keeps the last data and says so.
    c.d.execute_script("window.fetch = () => Promise.reject(new Error('network down'))")
    c.wait_text("#refresh-status", lambda t: "Refresh failed" in t and "showing data from" in t, "failed refresh")
    assert c.text("#health-status") == "HEALTHY", "the old data stays"
    c.shot("production-health-refresh-failed")
    c.no_console_errors("failed refresh")
    print("ok: refresh every 5 s; a failed refresh keeps the data and says so")

    # Chat traffic, then the request count on the analytics page.
    for i in range(3):
        status, body = http(
            "POST",
            "/v1/chat/completions",
            {"model": "auto", "messages": [{"role": "user", "content": f"Explain ownership {i}"}]},
            {"authorization": "Bearer " + API_KEY},
        )
        assert status == 200, (status, body)
    metrics = requests_counted(lambda n: n >= 3)
    expected = metrics["totals"]["requests"]
    c.go("/admin/dol/analytics")
    c.wait_text("#metric-requests", lambda t: t == f"{expected:,}", "request count")
    bars = c.d.find_elements(By.CSS_SELECTOR, "svg.chart rect")
    assert bars, "a bar chart of requests per model"
    points = c.d.find_elements(By.CSS_SELECTOR, "svg.series g.point")
    charted = sum(int(p.get_attribute("data-requests")) for p in points)
    series = sum(p["requests"] for p in metrics["series"])
    assert points and charted == series == expected, (len(points), charted, series, expected)
    # Breakdowns sort by a column on a click on its header.
    header = c.d.find_element(By.XPATH, "//section[@aria-label='Analytics']//h3[text()='By model']/following-sibling::table[1]//th[2]/button")
    header.click()
    assert header.find_element(By.XPATH, "..").get_attribute("aria-sort") == "ascending"
    header.click()
    assert header.find_element(By.XPATH, "..").get_attribute("aria-sort") == "descending"
    # Several series overlaid: one line per model, its points the API's
    # per-model figures (from the minute/hour aggregates), per metric.
    def overlay(metric, by):
        """The lines drawn and the API's figures for them, read now."""
        _, fresh = http("GET", "/api/metrics?window=1h")
        groups = fresh["seriesBy"][by]
        want = {k: [v for v in g[metric] if v is not None] for k, g in groups.items()}
        want = {k: [float(x) for x in v] for k, v in want.items() if any(v)}
        lines = c.d.find_elements(By.CSS_SELECTOR, "#overlay-chart g.line")
        drawn = {
            line.get_attribute("data-group"): [float(p.get_attribute("data-value")) for p in line.find_elements(By.TAG_NAME, "circle")]
            for line in lines
        }
        return drawn, want

    for metric, by in (("p95Ms", "model"), ("p99Ms", "model"), ("avgQuality", "provider"), ("costUsd", "tier")):
        c.choose("overlay-metric", metric)
        c.choose("overlay-by", by)
        # The series' minutes move with the clock: when a minute ends
        # between the page's fetch and ours, the page catches up at its
        # next refresh (every 5 s), so compare until both read the same
        # minutes (at most three refreshes).
        deadline = time.monotonic() + 16
        while True:
            try:
                drawn, want = overlay(metric, by)
            except StaleElementReferenceException:
                drawn, want = None, {}
            if drawn == want or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        assert drawn == want, (metric, by, drawn, want)
    assert len(c.d.find_elements(By.CSS_SELECTOR, ".legend li")) == len(want), "a legend entry per line"
    c.shot("analytics")
    c.no_console_errors("analytics")
    print("ok: analytics shows", expected, "requests; per-group lines overlaid match the API")

    # The organization selector: an org's own figures on analytics and health.
    admin_auth = {"authorization": "Bearer " + ADMIN}
    status, _ = http("PUT", "/admin/orgs/acme", {"name": "Acme"}, admin_auth)
    assert status == 201, status
    status, key = http("POST", "/admin/keys", {"name": "acme-web", "org": "acme"}, admin_auth)
    assert status == 201, key
    for i in range(2):
        status, body = http(
            "POST",
            "/v1/chat/completions",
            {"model": "auto", "messages": [{"role": "user", "content": f"Acme question {i}"}]},
            {"authorization": "Bearer " + key["key"]},
        )
        assert status == 200, (status, body)
    requests_counted(lambda n: n == expected + 2)
    c.go("/admin/dol/analytics")
    c.wait_text("#metric-requests", lambda t: t == f"{expected + 2:,}", "all orgs' requests")
    Select(c.d.find_element(By.ID, "org-select")).select_by_value("acme")
    c.wait_text("#metric-requests", lambda t: t == "2", "acme's requests")
    assert "org=acme" in c.d.current_url, c.d.current_url
    heading = c.d.find_element(By.CSS_SELECTOR, "section[aria-label='Analytics: acme'] h2")
    assert heading.text == "Analytics: acme", heading.text
    c.shot("analytics-org")
    c.go("/admin/dol/production-health?org=acme")
    c.wait_text("#health-status", lambda t: t == "HEALTHY", "acme's health")
    assert Select(c.d.find_element(By.ID, "org-select")).first_selected_option.get_attribute("value") == "acme"
    assert c.d.find_element(By.CSS_SELECTOR, "section[aria-label='Production health: acme']")
    Select(c.d.find_element(By.ID, "org-select")).select_by_value("")
    c.wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "section[aria-label='Production health']"))
    assert "org=" not in c.d.current_url, c.d.current_url
    c.shot("production-health-org")
    c.no_console_errors("organization selector")
    print("ok: the organization selector narrows analytics and health to acme")

    # Kill switch from the page: OFREP then serves the default variant.
    flag = "comprehensive_engines"
    assert ofrep(flag) == "on", "targeting serves `on` before the kill"
    c.go("/admin/dol/flags")
    button = c.wait.until(
        EC.element_to_be_clickable((By.CSS_SELECTOR, f'button.action[data-flag="{flag}"]'))
    )
    assert button.text == "Kill switch"
    button.click()
    c.wait.until(EC.alert_is_present()).accept()
    c.text(f'[data-killed="{flag}"]')
    assert ofrep(flag) == "off", "the default variant after the kill"
    c.shot("flags")
    c.no_console_errors("flags")
    print("ok: kill switch from the page; OFREP serves the default variant")

    # Edit a flag as JSON: the server's validation error names the field.
    c.d.find_element(By.CSS_SELECTOR, 'button.action[data-edit="beta_features"]').click()
    editor = c.wait.until(EC.visibility_of_element_located((By.ID, "flag-json")))
    flag_json = json.loads(editor.get_attribute("value"))
    flag_json["state"] = "MAYBE"
    c.d.execute_script("arguments[0].value = arguments[1]", editor, json.dumps(flag_json))
    c.d.find_element(By.ID, "flag-save").click()
    c.wait_text("#flag-error", lambda t: t.startswith("flags.beta_features.state:"), "validation error at the field")
    c.shot("flags-edit-error")
    flag_json["state"] = "ENABLED"
    c.d.execute_script("arguments[0].value = arguments[1]", editor, json.dumps(flag_json))
    c.d.find_element(By.ID, "flag-save").click()
    c.text("#flag-saved")
    _, saved = http("GET", "/admin/flags/beta_features", headers={"authorization": "Bearer " + ADMIN})
    assert saved["flag"]["state"] == "ENABLED", saved
    # The refused PUT is a 400 that Chromium logs as a failed load; nothing else may be.
    c.no_console_errors("flag edit", allowed=("/admin/flags/beta_features - Failed to load resource: the server responded with a status of 400",))
    print("ok: a flag edited as JSON, the validation error shown at its field")

    # Live evaluation counts per variant, as the API counts them.
    c.go("/admin/dol/flags")
    cell = c.wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, f'[data-evaluations="{flag}"]')))
    _, live = http("GET", f"/admin/flags/{flag}/evaluations", headers={"authorization": "Bearer " + ADMIN})
    shown = {e.get_attribute("data-variant"): int(e.get_attribute("data-count")) for e in cell.find_elements(By.CSS_SELECTOR, "[data-variant]")}
    assert shown == live["variants"] and shown.get("on", 0) >= 1 and shown.get("off", 0) >= 1, (shown, live)

    # A rollout: its guards against their thresholds, its decisions over time.
    plan = {
        "variant": "enhanced", "control": "comprehensive",
        "steps": [{"percent": 10, "hold": "1h"}, {"percent": 100, "hold": "1h"}],
        "min_samples": 5,
        "guards": [{"metric": "error_rate", "threshold": 0.1, "window": "15m", "for": "5m"}],
    }
    rollout_flag = "generation_pipeline"
    status, body = http("PUT", f"/admin/flags/{rollout_flag}/rollout", plan, {"authorization": "Bearer " + ADMIN})
    assert status == 201, (status, body)
    c.go("/admin/dol/flags")
    guard = c.text(f'[data-guard="{rollout_flag}:error_rate"]')
    _, view = http("GET", f"/admin/flags/{rollout_flag}/rollout", headers={"authorization": "Bearer " + ADMIN})
    assert view["guards"][0]["bound"] == 0.1 and guard.startswith(view["guards"][0]["state"]), (guard, view["guards"])
    c.d.find_element(By.CSS_SELECTOR, f'button.action[data-rollout="{rollout_flag}"]').click()  # Pause
    c.wait.until(EC.alert_is_present()).accept()
    c.wait.until(lambda d: [
        e.get_attribute("data-action")
        for e in d.find_elements(By.CSS_SELECTOR, f'svg[data-timeline="{rollout_flag}"] circle')
    ] == ["rollout-start", "rollout-pause"])
    c.shot("flags-rollout")
    status, body = http("DELETE", f"/admin/flags/{rollout_flag}/rollout", headers={"authorization": "Bearer " + ADMIN})
    assert status == 200, (status, body)
    c.no_console_errors("flag evaluations and rollout")
    print("ok: evaluation counts per variant; a rollout's guards and its decisions over time")

    # Create a key: shown once, and it works.
    c.go("/admin/dol/keys")
    name = c.wait.until(EC.visibility_of_element_located((By.ID, "key-name")))
    name.send_keys("browser-test")
    c.d.find_element(By.CSS_SELECTOR, "#create-key button").click()
    key = c.text("#new-key-value")
    assert key.startswith("dol_sk_"), key
    assert "(no limit)" in c.text("[data-budget]"), "budget column"
    c.shot("keys")
    status, _ = http(
        "POST",
        "/v1/chat/completions",
        {"model": "auto", "messages": [{"role": "user", "content": "hello"}]},
        {"authorization": "Bearer " + key},
    )
    assert status == 200, "the new key works"
    c.go("/admin/dol/keys")
    c.text("#create-key")
    assert not c.d.find_elements(By.ID, "new-key"), "the key is shown once"
    assert key not in c.d.page_source
    c.no_console_errors("keys")
    print("ok: key created, shown once")

    # A firing alert, acknowledged from the page.
    with open(FIRING, "rb") as f:
        payload = json.load(f)
    status, body = http("POST", "/webhooks/alertmanager", payload, {"authorization": "Bearer " + AM_TOKEN})
    assert status == 200, (status, body)
    c.go("/admin/dol/alerts")
    ack = c.wait.until(
        EC.element_to_be_clickable((By.XPATH, "//button[contains(@class,'action') and text()='Acknowledge']"))
    )
    alert_id = ack.get_attribute("data-alert")
    ack.click()
    c.wait_text("main", lambda t: "ack by" in t, "acknowledged alert")
    _, alert = http("GET", "/admin/alerts/" + alert_id, headers={"authorization": "Bearer " + ADMIN})
    assert alert["alert"]["state"]["acknowledged_at_ms"], alert
    assert "HighErrorRate" in c.text("main"), "the rules in force"
    # Silence it for 2 h from the page, then remove the silence.
    c.wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, 'button.action[data-silence="DolHighErrorRate"]'))).click()
    c.wait.until(EC.alert_is_present()).accept()
    c.wait_text("main", lambda t: "alertname = DolHighErrorRate" in t, "the new silence")
    _, silences = http("GET", "/admin/silences", headers={"authorization": "Bearer " + ADMIN})
    assert [x for x in silences["silences"] if x["active"]], silences
    c.shot("alerts-silenced")
    c.wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, "button.action[data-unsilence]"))).click()
    c.wait.until(EC.alert_is_present()).accept()
    c.wait_text("main", lambda t: "No silences." in t, "the silence removed")
    c.shot("alerts")
    c.no_console_errors("alerts")
    print("ok: alert acknowledged from the page")

    # Experiments: the report as the API computes it, intervals drawn.
    definition = {
        "flag": "generation_experiment",
        "control": "control",
        "variants": [{"name": "control", "weight": 90}, {"name": "treatment", "weight": 10}],
        "primary": {"kind": "conversion", "event": "purchase"},
    }
    status, body = http("PUT", "/admin/experiments/console-demo", definition, {"authorization": "Bearer " + ADMIN})
    assert status in (200, 201), (status, body)
    _, report = http("GET", "/admin/experiments/console-demo", headers={"authorization": "Bearer " + ADMIN})
    c.go("/admin/dol/experiments")
    c.wait_text("main", lambda t: "console-demo" in t and "Verdict: " + report["verdict"]["decision"] in t, "experiment verdict")
    c.shot("experiments")
    c.no_console_errors("experiments")

    # A model without a price (as discovery records one), priced from the page.
    unpriced = {"tier": "basic", "input_usd_per_1m": None, "output_usd_per_1m": None, "context_window": 4096, "capabilities": []}
    status, body = http("PUT", "/admin/models/openai/console-new", unpriced, {"authorization": "Bearer " + ADMIN})
    assert status == 200, (status, body)
    c.go("/admin/dol/models")
    c.wait_text("main", lambda t: "gpt-4o" in t and "no price" in t, "the model catalog")
    form = c.d.find_element(By.CSS_SELECTOR, 'form[data-price="openai/console-new"]')
    form.find_element(By.ID, "in-openai-console-new").send_keys("0.5")
    form.find_element(By.ID, "out-openai-console-new").send_keys("1.5")
    form.find_element(By.TAG_NAME, "button").click()
    c.wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, 'form[data-price="openai/console-new"]'))
    _, catalog = http("GET", "/admin/models", headers={"authorization": "Bearer " + ADMIN})
    priced = [m for m in catalog["models"] if m["model"] == "console-new"][0]
    assert (priced["input_usd_per_1m"], priced["output_usd_per_1m"]) == (0.5, 1.5), priced
    c.shot("models")
    c.no_console_errors("models")

    for tone in ("neutral", "formal"):
        template = {
            "messages": [{"role": "system", "content": f"Answer in a {tone} tone."}, {"role": "user", "content": "Summarize: {{text}}"}],
            "variables": {"text": {}},
        }
        status, body = http("PUT", "/admin/templates/summarize", template, {"authorization": "Bearer " + ADMIN})
        assert status in (200, 201), (status, body)
    c.go("/admin/dol/templates")
    c.wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, 'button[data-compare="summarize"]'))).click()
    c.wait_text("#template-compare", lambda t: "neutral tone" in t and "formal tone" in t, "two versions side by side")
    c.shot("templates")
    c.no_console_errors("templates")

    c.go("/admin/dol/audit")
    c.wait_text("main", lambda t: "console:admin" in t, "the page's kill in the audit log")
    c.shot("audit")
    c.no_console_errors("audit")

    c.go("/admin/dol/scans")
    c.wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, 'button.action[data-scan="heartbeat"]'))).click()
    c.wait_text("#scan-result", lambda t: "heartbeat ran" in t, "run a scan now")
    _, runs = http("GET", "/admin/scans/heartbeat?limit=10", headers={"authorization": "Bearer " + ADMIN})
    rows = c.d.find_elements(By.CSS_SELECTOR, '[data-history="heartbeat"] tbody tr')
    assert runs["runs"] and len(rows) == len(runs["runs"]), (len(rows), runs)
    assert "ok" in rows[0].text, rows[0].text
    c.shot("scans")
    c.no_console_errors("scans")

    # Optimization: savings cards and a recommendation (a model without a
    # price), dismissed from the page.
    status, body = http("PUT", "/admin/models/openai/console-unpriced", unpriced, {"authorization": "Bearer " + ADMIN})
    assert status == 200, (status, body)
    c.go("/admin/dol/optimization")
    c.text("#opt-saved")
    # The auto entry tier's table: off by default (the seeded tier flag serves no `auto`).
    assert "Auto entry is off" in c.text("#opt-auto-entry"), c.text("#opt-auto-entry")
    dismiss = c.wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, 'button.action[data-dismiss]')))
    c.shot("optimization")
    dismiss.click()
    c.wait_text("#recommendation-result", lambda t: "Dismissed" in t, "dismiss a recommendation")
    _, recs = http("GET", "/admin/recommendations?status=all", headers={"authorization": "Bearer " + ADMIN})
    assert any(r["status"] == "dismissed" for r in recs["recommendations"]), recs
    c.no_console_errors("optimization")

    print("ok: experiments, models, audit, scans and the optimization page")

    # Video monitoring: a job on the mock platform, then its health as /api/health reports it.
    status, video = http("POST", "/v1/videos", {"prompt": "a red fox", "seconds": "4", "model": "veo3.1_fast"}, {"authorization": "Bearer " + API_KEY})
    assert status == 200, (status, video)
    for _ in range(20):
        status, video = http("GET", "/v1/videos/" + video["id"], headers={"authorization": "Bearer " + API_KEY})
        if video["status"] in ("completed", "failed"):
            break
    assert video["status"] == "completed", video
    _, health = http("GET", "/api/health")
    platforms = health["videoPlatforms"]
    healthy = sum(1 for p in platforms if p["healthy"])
    c.go("/admin/dol/video-monitoring")
    c.wait_text("#video-healthy", lambda t: t == f"{healthy} of {len(platforms)}", "platforms healthy")
    for p in platforms:
        want = "–" if p["successRate"] is None else f"{p['successRate'] * 100:.1f} %"
        assert c.text(f'[data-video-success="{p["platform"]}"]') == want, p
    assert "/ s" in c.text("main"), "cost per second"
    c.shot("video-monitoring")
    c.no_console_errors("video monitoring")
    print("ok: video monitoring shows", healthy, "of", len(platforms), "platforms healthy")

    # Sign out: the cookie is gone and the pages ask to sign in again.
    c.go("/admin/dol")
    session = c.d.get_cookie("dol_session")["value"]
    c.d.find_element(By.ID, "sign-out-button").click()
    c.text("#token")
    assert not c.d.get_cookies(), c.d.get_cookies()
    c.go("/admin/dol/keys")
    c.text("#token")
    assert not c.d.find_elements(By.ID, "create-key")
    status, body = http("GET", "/admin/keys", headers={"cookie": "dol_session=" + session})
    assert status == 401 and "signed out" in json.dumps(body), (status, body)
    c.no_console_errors("sign out")
    print("ok: signed out and refused")


def viewer_flow(c):
    c.sign_in(VIEWER)
    c.wait_text("#health-status", lambda t: t in ("HEALTHY", "WARNING", "CRITICAL"), "viewer health")
    assert c.text("#role") == "viewer"
    every_page(c, "viewer", check=no_actions)
    c.shot("viewer-video-monitoring")
    print("ok: the viewer sees no action buttons")
    phone_width(c)


# Every console page, and an element it shows once rendered.
PAGES = (
    ("", "#health-status"),
    ("production-health", "#health-status"),
    ("analytics", "#metric-requests"),
    ("flags", "main h2"),
    ("keys", "main h2"),
    ("alerts", "main h2"),
    ("experiments", "main h2"),
    ("models", "main h2"),
    ("templates", "main h2"),
    ("audit", "main h2"),
    ("scans", "main h2"),
    ("optimization", "main h2"),
    ("video-monitoring", "main h2"),
)


def every_page(c, label, shot_prefix=None, check=None):
    """Opens every console page, waits for it to render, fails on console
    errors; `check(c, path)` runs on each, screenshots under `shot_prefix`."""
    for page, ready in PAGES:
        c.go("/admin/dol/" + page)
        c.text(ready)
        if check:
            check(c, "/admin/dol/" + page)
        c.no_console_errors(label + " " + (page or "overview"))
        if shot_prefix:
            c.shot(shot_prefix + (page or "overview"))


def empty_flow(c):
    """Before any traffic: every page renders, and says what to do."""
    c.sign_in(ADMIN)
    c.wait_text("#health-status", lambda t: t in ("HEALTHY", "WARNING", "CRITICAL"), "health with no traffic")
    every_page(c, "empty", "empty-")
    c.go("/admin/dol/analytics")
    c.wait_text("#metric-requests", lambda t: t == "0", "no requests yet")
    assert "No requests in this window yet" in c.text("main"), "the empty chart says so"
    assert "No p95 latency in this window yet" in c.text("#overlay-empty")
    c.go("/admin/dol/video-monitoring")
    assert "POST /v1/videos" in c.text("#video-empty")
    c.go("/admin/dol/flags")
    c.text('[data-evaluations="comprehensive_engines"]')
    assert "No rollouts" in c.text("main")
    print("ok: every page renders with no traffic, with empty states")


def no_actions(c, what):
    actions = c.d.find_elements(By.CSS_SELECTOR, "button.action, #create-key")
    assert not actions, f"viewer sees action buttons on {what}: {[a.text for a in actions]}"


def no_overflow(c, what):
    width, inner = c.d.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= inner, f"{what}: {width} px wide in a {inner} px window"


def phone_width(c):
    """At phone width every page fits the screen (tables scroll inside)."""
    c.d.set_window_size(400, 900)
    assert c.d.execute_script("return window.innerWidth") <= 420
    every_page(c, "phone width", check=no_overflow)
    c.shot("phone-video-monitoring")
    print("ok: no horizontal overflow at 400 px")


def down_flow(c):
    """One provider down (the test made its mock fail): the probes see it,
    traffic still gets answers, and every page keeps working."""
    status, probes = http("POST", "/admin/scans/probes", headers={"authorization": "Bearer " + ADMIN})
    assert status == 200, (status, probes)
    for i in range(4):
        status, body = http(
            "POST",
            "/v1/chat/completions",
            {"model": "auto", "messages": [{"role": "user", "content": f"still there {i}"}]},
            {"authorization": "Bearer " + API_KEY},
        )
        assert status == 200, (status, body)
    c.sign_in(ADMIN)
    _, health = http("GET", "/api/health")
    c.wait_text("#health-status", lambda t: t == health["systemHealth"]["status"], "health with a provider down")
    every_page(c, "provider down", "down-")
    _, metrics = http("GET", "/api/metrics?window=1h")
    c.go("/admin/dol/analytics")
    c.wait_text("#metric-requests", lambda t: t == f"{metrics['totals']['requests']:,}", "requests with a provider down")
    print("ok: every page works with one provider down")


def firefox_flow(c):
    """The same pages in Firefox: each renders its figures, no script error."""
    c.sign_in(ADMIN)
    c.wait_text("#health-status", lambda t: t in ("HEALTHY", "WARNING", "CRITICAL"), "Firefox health")
    every_page(c, "Firefox", "firefox-")
    _, metrics = http("GET", "/api/metrics?window=1h")
    c.go("/admin/dol/analytics")
    c.wait_text("#metric-requests", lambda t: t == f"{metrics['totals']['requests']:,}", "Firefox request count")
    assert c.d.find_elements(By.CSS_SELECTOR, "#overlay-chart g.line"), "Firefox draws the overlay chart"
    c.d.set_window_size(400, 900)
    every_page(c, "Firefox phone width", check=no_overflow)
    print("ok: every page in Firefox, and at 400 px")


def main():
    os.makedirs(ARTIFACTS, exist_ok=True)
    phase = os.environ.get("DOL_PHASE", "main")
    flows = {"main": (empty_flow, admin_flow, viewer_flow), "provider-down": (down_flow,)}[phase]
    if phase == "main" and GECKODRIVER:
        flows += (firefox_flow,)
    for flow in flows:
        errors = None
        if flow is firefox_flow:
            driver, errors = firefox()
        else:
            driver = browser()
        c = Console(driver, errors)
        try:
            flow(c)
        except Exception:
            c.shot("failure-" + flow.__name__)
            raise
        finally:
            driver.quit()
    print("all checks passed")


if __name__ == "__main__":
    sys.exit(main())
