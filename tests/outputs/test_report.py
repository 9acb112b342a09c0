"""The offline HTML report of a real (tiny) run: sections, escaping, atomic writes, and Chromium rendering it."""

from __future__ import annotations

import re
import time

import pytest
import torch
from conftest import classification_data, small_model
from jupyter_helpers import CHROMIUM, CHROMIUM_ARGS
from plotly.offline import get_plotlyjs
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from onthefly_nb import Session
from onthefly_nb.outputs.report import HARDEST_ROWS, write_report

RUN_NAME = "tiny <run> & co"
SECTIONS = ["Loss over time", "Hardest samples", "Clusters of hard samples", "Experts and merges", "Comparison",
            "Lineage", "Health", "Events"]
PLOTLY_BANNER = re.compile(r"\* plotly\.js v\d")


def tiny_session(**kwargs) -> Session:
    """A small classifier with a validation split of the same rule (never started)."""
    x, y = classification_data(640).tensors
    train, val = TensorDataset(x[:512], y[:512]), TensorDataset(x[512:], y[512:])
    model = small_model()
    return Session(model, torch.optim.SGD(model.parameters(), lr=0.05), nn.CrossEntropyLoss(),
                   DataLoader(train, batch_size=16, shuffle=True), DataLoader(val, batch_size=64),
                   max_epochs=3, recluster_seconds=None, run_name=RUN_NAME, **kwargs)


@pytest.fixture(scope="module")
def trained() -> Session:
    """Three epochs with validation, then a health check, clusters, a fork and a comparison."""
    torch.manual_seed(0)
    session = tiny_session()
    session.start().wait(timeout=120)
    session.health()
    assert session.cluster() is not None
    session.fork(session.slice("cluster == 0")["index"].tolist(), budget=10, name="blob")
    session.compare()
    return session


@pytest.fixture(scope="module")
def report(trained, tmp_path_factory) -> str:
    path = write_report(trained, tmp_path_factory.mktemp("report") / "run.html")
    assert path.name == "run.html" and path.exists()
    return path.read_text(encoding="utf-8")


def section(html: str, heading: str) -> str:
    """The HTML from a heading to the next heading of any level."""
    return re.search(rf">{re.escape(heading)}</h[23]>(.*?)(?=<h[23]>|$)", html, re.S).group(1)


def test_the_report_is_one_offline_page_with_every_section(report):
    assert report.startswith("<!DOCTYPE html>") and "<meta charset='utf-8'>" in report
    assert "tiny &lt;run&gt; &amp; co" in report and "<run>" not in report, "the run name is escaped"
    assert report.count(get_plotlyjs()) == len(PLOTLY_BANNER.findall(report)) == 1, "plotly.js inlined once"
    # plotly.js itself holds default URLs for map tiles and geo shapes (cdn.plot.ly, ...), unused here
    ours = report.replace(get_plotlyjs(), "")
    assert not re.search(r"""<script[^>]*\bsrc\s*=|<link[^>]*href\s*=\s*["']?(https?:)?//""", ours)
    assert "https://cdn" not in ours and "http://" not in ours and "https://" not in ours
    for heading in SECTIONS:
        assert f">{heading}</h" in report, heading
    assert "none yet" not in report, "every section has something to show"
    assert report.count('class="plotly-graph-div"') == report.count("class='onthefly-report-figure'") == 1


def test_header_health_experts_and_events(trained, report):
    header = report[:report.index("<section")]
    assert ">finished<" in header and f">{trained.global_step} / {trained.total_steps}<" in header
    assert ">3 / 3<" in header and ">validation<" in header
    health = section(report, "Health")
    for finding in trained.health_report["results"]:
        assert f"<td>{finding['check']}</td>" in health and f"<td>{finding['status']}</td>" in health
    lineage = section(report, "Lineage")
    assert "<td>tiny &lt;run&gt; &amp; co</td>" in lineage and "<td>blob</td>" in lineage and "<td>10</td>" in lineage
    assert "slice blob loss" in section(report, "Comparison")
    events = section(report, "Events")
    assert "<td>health</td>" in events and "<td>forked</td>" in events and "<td>validation</td>" in events


def test_the_hardest_samples_are_the_slice_sorted_by_hardness(trained, report):
    expected = trained.slice(features=False).sort_values("hardness", ascending=False, kind="stable")
    shown = [int(i) for i in re.findall(r"<tr>\s*<td>(\d+)</td>", section(report, "Hardest samples"))]
    assert shown == expected["index"].head(HARDEST_ROWS).tolist()
    clusters = section(report, "Clusters of hard samples")
    assert len(re.findall(r"<tr>\s*<th>\d+</th>", clusters)) == len(trained.clusters)


def test_a_fresh_session_says_none_yet_and_writes_no_plotly(tmp_path):
    session = tiny_session()
    html = write_report(session, str(tmp_path / "fresh.html")).read_text(encoding="utf-8")
    assert html.count("none yet") == 7 and "no health check taken" in html
    assert not PLOTLY_BANNER.search(html) and "<script" not in html


def test_writes_atomically_and_names_a_missing_folder(tmp_path):
    session = tiny_session()
    target = tmp_path / "run.html"
    target.write_text("old")
    write_report(session, target)
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["run.html"], "no temporary file is left behind"
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "missing"))):
        write_report(session, tmp_path / "missing" / "run.html")
    with pytest.raises(IsADirectoryError):
        write_report(session, tmp_path)


def test_a_running_session_can_be_reported(session_factory, tmp_path):
    session = session_factory(max_epochs=500, recluster_seconds=None)
    session.start()
    deadline = time.monotonic() + 60
    while len(session.history) < 20 and time.monotonic() < deadline:  # the history is flushed every 0.5 s
        time.sleep(0.01)
    html = write_report(session, tmp_path / "live.html").read_text(encoding="utf-8")
    assert "<td>running</td>" in html and html.count(get_plotlyjs()) == 1
    session.stop()


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed")
def test_chromium_renders_the_report_offline(trained, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    path = write_report(trained, tmp_path / "run.html")
    errors: list[str] = []
    blocked: list[str] = []

    def offline(route) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.route("**/*", offline)
            page.goto(path.as_uri())
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
            plots = page.locator(".js-plotly-plot")
            assert plots.count() == page.locator(".onthefly-report-figure").count() == 1
            for i in range(plots.count()):
                assert plots.nth(i).locator(".main-svg").count() >= 1
                assert plots.nth(i).locator(".scatterlayer .trace").count() >= 6, "the fan, median and validation"
            legend = page.eval_on_selector_all(".js-plotly-plot .legendtext", "els => els.map((e) => e.textContent)")
            assert "validation loss" in legend and "median" in legend
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            assert page.title() == "onthefly report · default / tiny <run> & co"
        finally:
            browser.close()
    assert blocked == [], f"the report asked the network for {blocked}"
    assert errors == [], f"browser console errors: {errors}"
