"""The HTML report and ``mtlkit compare``: structure, Δm% wiring, and a headless-Chromium check."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import warnings
from pathlib import Path

import matplotlib.image as mpimg
import pytest
from tests.conftest import tiny_config, tiny_table
from typer.testing import CliRunner

from mtlkit import api
from mtlkit.cli import app
from mtlkit.data.schema import HIGHER_IS_BETTER
from mtlkit.report import SECTIONS, build_report, compare_runs, load_comparison

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("MTLKIT_TEST_ARTIFACTS", REPO / "build" / "test-artifacts"))
IMG = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory) -> dict[str, Path]:
    """Three tiny runs: MMoE (with every diagnostic), shared-bottom, and a single-task reference."""
    root = tmp_path_factory.mktemp("runs")
    table = root / "tiny.csv"
    tiny_table(300).to_csv(table, index=False)
    out = {}
    for model in ("mmoe", "shared_bottom", "single_task"):
        cfg = tiny_config(str(table), model, epochs=2)
        cfg["diagnostics"] = {"every": 2, "tag_every": 4}
        api.train(cfg, out=root / model)
        out[model] = root / model
    return out


@pytest.fixture(scope="module")
def report_html(run_dirs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    return build_report(list(run_dirs.values()), out)


def _hand_delta_m(run: dict, ref: dict) -> float:
    per_task = []
    for task, metrics in ref.items():
        d = [(1 if HIGHER_IS_BETTER[m] else -1) * (run[task][m] - r) / abs(r) * 100
             for m, r in metrics.items()]
        per_task.append(sum(d) / len(d))
    return sum(per_task) / len(per_task)


def test_compare_uses_single_task_runs_as_references(run_dirs):
    runs, refs = load_comparison(list(run_dirs.values()))
    assert refs is None  # none passed: single_task runs are picked
    rows = {r.run.name: r for r in compare_runs(runs)}
    assert rows["single_task"].reference and rows["single_task"].delta is None
    for name in ("mmoe", "shared_bottom"):
        split = "test" if rows[name].run.results.get("test") else "valid"
        expected = _hand_delta_m(rows[name].run.results[split],
                                 rows["single_task"].run.results[split])
        assert rows[name].delta.value == pytest.approx(expected)


def test_explicit_baseline_overrides(run_dirs):
    runs, refs = load_comparison([run_dirs["mmoe"]], baselines=[run_dirs["shared_bottom"]])
    assert [r.name for r in runs] == ["mmoe", "shared_bottom"] and refs[0].name == "shared_bottom"
    rows = compare_runs(runs, refs)
    assert rows[1].reference and rows[0].delta is not None


def test_cli_compare_and_report(run_dirs, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["compare", *map(str, run_dirs.values())],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "reference" in result.output and "Δm%" in result.output
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["report", str(run_dirs["mmoe"]), "--baseline",
                                 str(run_dirs["single_task"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.exists() and "single_task" in out.read_text()
    bad = runner.invoke(app, ["report", str(tmp_path / "nope"), "--out", str(out)])
    assert bad.exit_code == 2
    assert "not a finished mtlkit run directory" in " ".join(bad.output.split())


def test_report_structure_and_images(report_html):
    text = report_html.read_text()
    for _, heading in SECTIONS:
        assert f"<h2>{heading}</h2>" in text
    images = IMG.findall(text)
    alts = [a for a, _ in images]
    assert "gradient cosine of mmoe" in alts and "expert utilisation of mmoe gate" in alts
    assert "task affinity of mmoe" in alts and "learning curves of click" in alts
    for alt, data in images:
        pixels = mpimg.imread(io.BytesIO(base64.b64decode(data)), format="png")
        assert pixels.shape[0] > 10 and pixels.shape[1] > 10, alt
    assert "<script" not in text and "http://" not in text and "https://" not in text


# --------------------------------------------------------------------- headless Chromium


def _browser() -> tuple[str, str]:
    chromium = os.environ.get("MTLKIT_CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
        None)
    driver = os.environ.get("MTLKIT_CHROMEDRIVER") or shutil.which("chromedriver")
    if not chromium or not driver:
        reason = ("HEADLESS CHROMIUM NOT FOUND - the browser test of the HTML report did NOT run. "
                  "Install it with `apt-get install -y chromium chromium-driver` (or set "
                  "MTLKIT_CHROMIUM / MTLKIT_CHROMEDRIVER).")
        warnings.warn(reason, stacklevel=2)
        pytest.skip(reason)
    return chromium, driver


def test_report_in_headless_chromium(report_html, tmp_path):
    chromium, driver_path = _browser()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By
    except ImportError:
        reason = ("SELENIUM NOT INSTALLED - the browser test of the HTML report did NOT run. "
                  "Install it with `pip install selenium`.")
        warnings.warn(reason, stacklevel=2)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.set_page_load_timeout(60)
        driver.get(report_html.resolve().as_uri())
        assert driver.execute_script("return document.readyState") == "complete"
        headings = [h.text for h in driver.find_elements(By.TAG_NAME, "h2")]
        assert headings == [h for _, h in SECTIONS]
        sizes = driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const imgs = Array.from(document.images);
            Promise.all(imgs.map(i => i.decode().then(() => [i.alt, i.naturalWidth,
                                                              i.naturalHeight],
                                                     () => [i.alt, 0, 0]))).then(done);
        """)
        assert len(sizes) >= 8
        for alt, width, height in sizes:
            assert width > 0 and height > 0, f"image {alt!r} did not decode"
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert not errors, f"console errors: {errors}"
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(int(height) + 100, 16000))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "report-screenshot.png"
        assert driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
    finally:
        driver.quit()
