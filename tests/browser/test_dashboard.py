"""The dashboard in a real browser: Debian's Chromium (Selenium) on a real ``hostmon api`` over a
store holding three hosts (tests/browser/fleet.py: web1 and web2 up to now, web2 with a firing
alert, old1 silent for hours).

Every wait is a WebDriverWait on a condition with a deadline. The page exposes what it drew in
``window.__hostmon`` (``charts``: per chart its request, window, step, series and points);
the requests themselves are read from the browser's own Resource Timing entries. With
HOSTMON_SCREENSHOTS=DIR the run writes overview.png, host.png, host-dark.png and phone.png there.
"""

from __future__ import annotations

import re
import statistics
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import TOKEN, Api, start_run

pytestmark = pytest.mark.integration

DEADLINE_S = 30
FAMILY_SERIES = {
    "cpu": ["cpu_usage_overall", "cpu_usage_1", "cpu_usage_2"],
    "memory": ["memory_usage"],
    "swap": ["swap_used_percent"],
    "load": ["load_1", "load_5", "load_15"],
    "disk-total": ["disk_read", "disk_write"],
    "network-total": ["network_sent", "network_recv"],
    "filesystem_used_percent": ["mount=/", "mount=/var"],
    "disk_read_bytes_per_s": ["device=sda"],
    "network_recv_bytes_per_s": ["interface=eth0"],
}


def wait(driver: Any, condition: Any, what: str, timeout_s: float = DEADLINE_S) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout_s, poll_frequency=0.05).until(condition)
    except TimeoutException:
        logs = driver.get_log("browser")
        message = f"timed out after {timeout_s} s waiting for {what}; browser log: {logs}"
        raise AssertionError(message) from None


def open_page(driver: Any, url: str) -> None:
    """A fresh document at URL (about:blank first, so a hash-only change is a real navigation)."""
    driver.get("about:blank")
    driver.get(url)


def drawn(driver: Any, route: str, charts: int = 0) -> dict[str, Any]:
    """Wait until the page shows ROUTE with at least CHARTS charts drawn; window.__hostmon."""
    script = "return window.__hostmon || null"

    def done(d: Any) -> dict[str, Any] | None:
        state = d.execute_script(script)
        ok = state and state.get("ready") and state.get("route") == route
        return state if ok and len(state.get("charts", {})) >= charts else None

    return wait(driver, done, f"the page at {route} with {charts} charts")


def drawn_at_ms(driver: Any) -> float:
    """When the page set its "hostmon:drawn" mark: ms from the navigation's start."""
    return float(driver.execute_script("return performance.getEntriesByName('hostmon:drawn')[0].startTime"))


def severe_logs(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def metrics_requests(driver: Any) -> list[dict[str, str]]:
    """The query of every /metrics request the browser made, in order (Resource Timing)."""
    names = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    out = []
    for name in names:
        parts = urllib.parse.urlsplit(name)
        if parts.path == "/metrics":
            out.append(dict(urllib.parse.parse_qsl(parts.query)))
    return out


def viewport(driver: Any, width_px: int, height_px: int, *, mobile: bool = False) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width_px, "height": height_px, "deviceScaleFactor": 1, "mobile": mobile},
    )


def screenshot(driver: Any, directory: Path | None, name: str) -> None:
    if directory is not None:
        driver.save_screenshot(str(directory / name))


def test_the_overview_lists_every_host_with_its_status(api: Api, browser: Any, screenshot_dir: Path | None):
    viewport(browser, 1280, 800)
    open_page(browser, api.url + "/")
    drawn(browser, "/")
    rows = browser.execute_script(
        "return [...document.querySelectorAll('#hosts-table tbody tr')]"
        ".map(r => [r.dataset.host, r.dataset.status, r.cells[3].textContent, r.cells[5].textContent])"
    )
    by_host = {host: (status, cpu, fs) for host, status, cpu, fs in rows}
    assert sorted(by_host) == ["old1", "web1", "web2"]
    assert {h: s for h, (s, _, _) in by_host.items()} == {"old1": "silent", "web1": "ok", "web2": "alerting"}
    _, cpu, fullest = by_host["web1"]
    assert cpu.endswith("%") and fullest.endswith((" /", " /var")), by_host["web1"]  # "83.1 % /var"
    firing = browser.execute_script(
        "return [...document.querySelectorAll('#alerts-firing li[data-rule]')].map(li => li.dataset.rule)"
    )
    assert "cpu_high" in firing
    health = browser.find_element("id", "health-list").text
    assert "Store" in health and "sqlite" in health
    screenshot(browser, screenshot_dir, "overview.png")
    assert severe_logs(browser) == []


def test_a_host_view_draws_every_family_with_at_most_a_point_per_pixel(
    api: Api, browser: Any, screenshot_dir: Path | None
):
    viewport(browser, 1280, 800)
    route = "/host/web1?range=1440"
    open_page(browser, f"{api.url}/#{route}")
    state = drawn(browser, route, charts=len(FAMILY_SERIES))
    first_render_ms = [drawn_at_ms(browser)]
    charts = state["charts"]
    for chart_id, series in FAMILY_SERIES.items():
        chart = charts[chart_id]
        assert chart["series"] == series, chart_id
        assert chart["window"]["start_minutes"] == 1440 and chart["window"]["end_minutes"] == 0
        # a day of 10 s samples, one bucket per step: at most a point per pixel, and most buckets filled
        assert all(0.9 * 86_400 / chart["step_s"] <= n <= chart["width_px"] for n in chart["points"]), chart
    total = sum(sum(c["points"]) for c in charts.values())
    screenshot(browser, screenshot_dir, "host.png")
    for _ in range(2):  # two more fresh loads: the figure is the median of three
        open_page(browser, f"{api.url}/#{route}")
        drawn(browser, route, charts=len(FAMILY_SERIES))
        first_render_ms.append(drawn_at_ms(browser))
    assert browser.find_element("id", "host-status").text.startswith("ok · last sample")
    label = browser.find_element("css selector", "#chart-filesystem_used_percent .plot").get_attribute(
        "aria-label"
    )
    assert re.fullmatch(
        r"Filesystem space in use, per mount, newest: mount=/ [\d.]+ %, mount=/var [\d.]+ %", label
    )
    runs = ", ".join(f"{ms:.0f}" for ms in first_render_ms)
    print(
        f"\nfirst render of a 24 h host view: median {statistics.median(first_render_ms):.0f} ms "
        f"(runs: {runs}) from navigation to {len(charts)} charts drawn ({total} points)"
    )
    assert severe_logs(browser) == []


def test_a_silent_hosts_view_says_so_and_why_its_charts_are_empty(api: Api, browser: Any):
    route = "/host/old1?range=60"
    open_page(browser, f"{api.url}/#{route}")
    charts = drawn(browser, route, charts=len(FAMILY_SERIES))["charts"]
    status = browser.find_element("id", "host-status").text
    assert re.fullmatch(r"silent · last sample 3\.\d h ago", status), status
    assert all(c["series"] == [] for c in charts.values())
    assert "No samples in this window." in browser.find_element("id", "chart-cpu").text
    route = "/host/old1?range=360"  # a window that reaches back to its last hour
    open_page(browser, f"{api.url}/#{route}")
    charts = drawn(browser, route, charts=len(FAMILY_SERIES))["charts"]
    assert charts["cpu"]["series"] == FAMILY_SERIES["cpu"] and min(charts["cpu"]["points"]) > 0
    assert severe_logs(browser) == []


def test_drag_to_zoom_asks_the_api_for_the_selected_window(api: Api, browser: Any):
    from selenium.webdriver.common.action_chains import ActionChains

    viewport(browser, 1280, 800)
    route = "/host/web1?range=1440"
    open_page(browser, f"{api.url}/#{route}")
    before = drawn(browser, route, charts=len(FAMILY_SERIES))["charts"]["cpu"]
    over = browser.find_element("css selector", "#chart-cpu .u-over")
    width = over.size["width"]
    (
        ActionChains(browser)
        .move_to_element_with_offset(over, -width // 4, 0)
        .click_and_hold()
        .move_by_offset(width // 4, 0)
        .move_by_offset(width // 4, 0)
        .release()
        .perform()
    )
    wait(browser, lambda d: "from=" in d.execute_script("return location.hash"), "the zoomed route")
    route = browser.execute_script("return location.hash").lstrip("#")
    after = drawn(browser, route, charts=len(FAMILY_SERIES))["charts"]["cpu"]
    old, new = before["window"], after["window"]
    assert old["start_ms"] < new["start_ms"] < new["end_ms"] < old["end_ms"]
    share = (new["end_ms"] - new["start_ms"]) / (old["end_ms"] - old["start_ms"])
    assert 0.3 < share < 0.7  # half the plot's width was selected
    assert after["step_s"] < before["step_s"] and all(n <= after["width_px"] for n in after["points"])
    zoomed = [q for q in metrics_requests(browser) if q["metrics"].startswith("cpu_usage_overall")][-1]
    assert float(zoomed["end"]) > 0 and float(zoomed["start"]) < 1440
    assert float(zoomed["start"]) - float(zoomed["end"]) == pytest.approx(share * 1440, rel=0.01)
    assert severe_logs(browser) == []


def test_a_live_view_refreshes_with_a_new_request(api: Api, browser: Any):
    route = "/host/web2?range=15"
    open_page(browser, f"{api.url}/#{route}")
    drawn(browser, route, charts=len(FAMILY_SERIES))
    browser.execute_script("document.querySelector('#chart-cpu canvas').dataset.before = 'refresh'")
    requests = len(metrics_requests(browser))
    loads = "return window.__hostmon.loads"
    first = browser.execute_script(loads)
    wait(browser, lambda d: d.execute_script(loads) > first, "a refresh drawn (every 10 s while live)")
    assert len(metrics_requests(browser)) > requests
    assert all(q["end"] == "0" and q["start"] == "15" for q in metrics_requests(browser))
    # new data into the same chart (a hover or a drag in progress survives the refresh)
    canvas = "return document.querySelector('#chart-cpu canvas').dataset.before || null"
    assert browser.execute_script(canvas) == "refresh"


def test_the_page_asks_for_the_token_once_and_sends_it_in_a_header(token_api: Api, browser: Any):
    open_page(browser, token_api.url + "/")
    dialog = browser.find_element("id", "token-dialog")
    wait(browser, lambda d: dialog.get_attribute("open") is not None, "the token prompt")
    field = browser.find_element("id", "token-input")
    field.send_keys("wrong-token")
    browser.find_element("id", "token-submit").click()
    wait(browser, lambda d: d.find_element("id", "token-error").is_displayed(), "the refused-token message")
    field.send_keys(TOKEN)
    browser.find_element("id", "token-submit").click()
    drawn(browser, "/")
    assert len(browser.find_elements("css selector", "#hosts-table tbody tr")) == 3
    browser.refresh()  # the same tab: the token is kept in sessionStorage, no prompt
    drawn(browser, "/")
    assert browser.find_element("id", "token-dialog").get_attribute("open") is None
    names = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert names and not [n for n in names if TOKEN in n]
    unexpected = [e for e in severe_logs(browser) if "status of 401" not in e["message"]]
    assert unexpected == []


def test_keyboard_phone_width_and_dark_theme(api: Api, browser: Any, screenshot_dir: Path | None):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    viewport(browser, 390, 844, mobile=True)
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}
    )
    open_page(browser, api.url + "/")
    drawn(browser, "/")
    body_background = "return getComputedStyle(document.body).backgroundColor"
    system_dark = browser.execute_script(body_background)
    assert browser.find_element("id", "theme-toggle").text == "Light"  # the system's dark, untouched
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "light"}]}
    )
    overflow_script = "return document.documentElement.scrollWidth - window.innerWidth"
    assert browser.execute_script(overflow_script) <= 0, "the overview is wider than a phone's screen"
    for _ in range(12):  # Tab through the page to a host's link, then Enter
        if browser.execute_script("return document.activeElement.textContent") == "web1":
            break
        ActionChains(browser).send_keys(Keys.TAB).perform()
    else:
        pytest.fail("the host link is not reachable with Tab")
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    drawn(browser, "/host/web1", charts=len(FAMILY_SERIES))
    overflow = browser.execute_script(overflow_script)
    assert overflow <= 0, f"the host view is {overflow} px wider than a phone's screen"
    widths = browser.execute_script("return Object.values(window.__hostmon.charts).map(c => c.width_px)")
    assert max(widths) <= 390
    screenshot(browser, screenshot_dir, "phone.png")
    light = browser.execute_script(body_background)
    assert light != system_dark
    browser.find_element("id", "theme-toggle").click()
    theme = "return document.documentElement.dataset.theme"
    wait(browser, lambda d: d.execute_script(theme) == "dark", "the dark theme")
    assert browser.execute_script(body_background) == system_dark
    viewport(browser, 1280, 800)
    route = "/host/web1?range=360"
    open_page(browser, f"{api.url}/#{route}")  # the choice is kept (localStorage)
    drawn(browser, route, charts=len(FAMILY_SERIES))
    assert browser.execute_script(theme) == "dark"
    screenshot(browser, screenshot_dir, "host-dark.png")
    stroke = "return window.__hostmon.charts.cpu.stroke"
    dark_stroke = browser.execute_script(stroke)
    browser.find_element("id", "theme-toggle").click()  # on a host view: the charts are redrawn
    wait(browser, lambda d: d.execute_script(stroke) != dark_stroke, "the charts in light colours")
    assert severe_logs(browser) == []


def test_hostmon_run_fills_in_the_local_hosts_charts(tmp_path: Path, browser: Any):
    """``make run``, then the page: opened before the first sample is stored, it shows the
    local host's charts once the agent has shipped, and their points grow as it samples."""
    run = start_run(tmp_path, host="localbox", interval_s=1.0)
    try:
        route = "/host/localbox?range=15"
        open_page(browser, f"{run.url}/#{route}")
        drawn(browser, route)

        def cpu_points(d: Any) -> int:
            return int(d.execute_script("const c = window.__hostmon.charts.cpu; return c ? c.points[0] : 0"))

        first = wait(browser, cpu_points, "the CPU chart's first points", timeout_s=60)
        wait(browser, lambda d: cpu_points(d) > first, "more points at the next refresh", timeout_s=60)
        charts = browser.execute_script("return window.__hostmon.charts")
        assert {"cpu", "memory", "load", "filesystem_used_percent"} <= set(charts), sorted(charts)
        assert severe_logs(browser) == []
    finally:
        run.stop()
    assert "Traceback" not in run.log(), run.log()
