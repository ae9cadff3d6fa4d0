"""The admin dashboard in Debian's Chromium, driven by Playwright, against a real ``lethe serve``.

Skips when ``/usr/bin/chromium`` (``apt-get install chromium``) or the ``playwright`` package is
missing, unless ``LETHE_REQUIRE_BROWSER=1``. Never runs ``playwright install``: the browser is the
system one. Screenshots go to ``runs/screenshots/``.

One service, in order: the page with 0 models; then a real digits model (trained, two unlearning
releases, an exact retrain), a failed model and a model with 1000 versions (rows written straight
into the service's database); the tests check that the chart and the tables show the numbers the
API returns, download a certificate, and page through 1000 versions.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from app.client import LetheClient

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "runs" / "screenshots"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.e2e


def _require_browser() -> Any:
    required = os.environ.get("LETHE_REQUIRE_BROWSER") == "1"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if required:
            raise
        pytest.skip("the playwright package is not installed")
    if not CHROMIUM.exists():
        if required:
            pytest.fail(f"LETHE_REQUIRE_BROWSER=1 but {CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    return sync_playwright


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_playwright = _require_browser()
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield chromium
        chromium.close()


def _seed(home: Path, dataset_id: str) -> dict[str, str]:
    """A failed model, and a model with 1000 signed versions, a running job (progress 0.42), a
5-minute-old pending request and a failed one, written into the service's DB."""
    from sqlalchemy.orm import Session

    from app.db import models as orm
    from app.db.session import make_engine
    from app.schemas.models import BatchingSpec, BudgetCaps, CertificationSpec, TrainingSpec
    from app.services import signing
    from app.settings import Settings

    settings = Settings(home=home)
    engine = make_engine(settings.resolved_database_url)
    recipe = {"training": TrainingSpec().model_dump(), "certification": CertificationSpec().model_dump(),
              "batching": BatchingSpec().model_dump(), "budget": BudgetCaps().model_dump()}
    try:
        with Session(engine) as s:
            failed = orm.Model(name="broken-mlp", dataset_id=dataset_id, architecture="mlp",
                               status="failed", error="training diverged: loss is NaN", **recipe)
            many = orm.Model(name="long-lived", dataset_id=dataset_id, architecture="logreg",
                             status="ready", current_version=999, **recipe)
            s.add_all([failed, many])
            s.flush()
            old = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(minutes=5)
            s.add_all([
                orm.Job(model_id=many.id, kind="unlearn", status="running", progress=0.42,
                        started_at=old),
                orm.DeletionRequest(model_id=many.id, sample_ids=[3], status="pending",
                                    created_at=old),
                orm.DeletionRequest(model_id=many.id, sample_ids=[4, 5], status="failed",
                                    error="solver diverged (NaN in the LiSSA recursion)"),
            ])
            for n in range(1000):
                sha = hashlib.sha256(f"v{n}".encode()).hexdigest()
                cert = signing.sign_certificate({"version": n, "weights_sha256": sha}, settings)
                kind = "trained" if n == 0 else "retrained" if n % 100 == 0 else "unlearned"
                s.add(orm.Version(model_id=many.id, number=n, lineage=n // 100, sha256=sha,
                                  size_bytes=1, kind=kind, certificate=cert,
                                  metrics={"accuracy": {"forget": 0.5, "retain": 0.9, "test": 0.85}}))
                step = kind == "unlearned"
                s.add(orm.LedgerEntry(
                    model_id=many.id, version=n, lineage=n // 100, kind=kind, m=int(step),
                    retain_size=1437 - n % 100, sensitivity=40.0 if step else 0.0,
                    noise_std=0.01 * (1 + n % 3) if step else 0.0, epsilon=1e4 if step else 0.0,
                    delta=1e-5 if step else 0.0, cumulative_epsilon=1e4 * (n % 100),
                    cumulative_delta=1e-5 * (n % 100), accountant="rdp" if step else "none"))
            s.commit()
            return {"failed": failed.id, "many": many.id}
    finally:
        engine.dispose()


def _values(page: Any, selector: str, attr: str = "data-value") -> list[float]:
    return [float(v) for v in page.eval_on_selector_all(selector, f"els => els.map(e => e.getAttribute('{attr}'))")]


def test_dashboard(live_service, browser, tmp_path: Path) -> None:
    service = live_service()
    base = f"http://127.0.0.1:{service.port}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # --- log in with 0 models --------------------------------------------------------------
    page.goto(f"{base}/admin")
    page.fill("#admin-key", "wrong-key")
    page.click("#login button[type=submit]")
    page.wait_for_selector("#error:not([hidden])")
    assert "401" in page.inner_text("#error")
    page.fill("#admin-key", service.key)
    page.click("#login button[type=submit]")
    page.wait_for_selector("#no-models:not([hidden])")
    assert page.evaluate("sessionStorage.getItem('lethe.adminKey')") == service.key
    assert page.evaluate("localStorage.length") == 0
    page.screenshot(path=str(SHOTS / "dashboard-0-models.png"), full_page=True)

    # --- a real model: train, two releases, an exact retrain ---------------------------------
    with LetheClient(base, service.key) as client:
        dataset = client.create_dataset("digits", "digits")
        model = client.create_model(
            "digits-logreg", dataset["id"], "logreg",
            training={"epochs": 5, "batch_size": 64, "lr": 3e-3},
            certification={"solver": "cg", "noise_std": 0.05},
            batching={"max_samples": 5, "max_wait_seconds": 600})
        mid = model["id"]
        assert client.wait_model(mid, timeout_s=240, poll_s=0.3)["status"] == "ready", service.log()
        for ids in (range(10, 15), range(20, 25)):
            done = client.wait_request(client.forget(mid, list(ids))["id"], timeout_s=240, poll_s=0.3)
            assert done["status"] == "completed", service.log()
        job = client.wait_job(client.retrain(mid)["job_id"], timeout_s=240, poll_s=0.3)
        assert job["status"] == "succeeded", service.log()
        budget = client.budget(mid)
        versions = client.list_versions(mid)
        cert = client.certificate(mid, 1)
    seeded = _seed(service.log_path.parent, dataset["id"])

    # --- the model page: chart and tables show the API's numbers ------------------------------
    page.reload()
    page.wait_for_selector(f"tr[data-model-id='{mid}'] a.model-link")
    assert page.locator("#models tbody tr").count() == 3
    page.click(f"tr[data-model-id='{mid}'] a.model-link")
    page.wait_for_selector("#versions tbody tr")
    rows = budget["rows"]
    assert [r["kind"] for r in rows] == ["trained", "unlearned", "unlearned", "retrained"]
    assert _values(page, "#chart-epsilon circle.pt-eps") == [r["cumulative_epsilon"] for r in rows]
    assert _values(page, "#chart-epsilon line.cap") == [budget["caps"]["max_epsilon"]]
    assert _values(page, "#chart-epsilon line.retrain", "data-version") == [3]
    unlearned = [r for r in rows if r["kind"] == "unlearned"]
    assert _values(page, "#chart-noise circle.pt-sigma") == [r["noise_std"] for r in unlearned]
    assert _values(page, "#chart-noise circle.pt-delta") == [r["sensitivity"] for r in unlearned]
    assert _values(page, "#chart-forgotten circle.pt-forgotten") == pytest.approx(
        [0, 5 / dataset["n"], 10 / dataset["n"], 0])
    assert _values(page, "#ledger td[data-field=epsilon]") == [r["epsilon"] for r in rows]
    assert _values(page, "#budget-summary [data-field=cumulative_epsilon] b") == [budget["cumulative_epsilon"]]
    assert _values(page, "#queue-counts td[data-status=completed]") == [2]
    assert page.inner_text("#oldest-pending") == "none"

    shown = page.locator("#versions tbody tr")
    assert shown.count() == len(versions) == 4
    for v in versions:
        row = page.locator(f"#versions tbody tr[data-version='{v['number']}']")
        acc = v["metrics"]["accuracy"]
        for split in ("retain", "test"):
            assert float(row.locator(f"td[data-field={split}]").get_attribute("data-value")) == acc[split]
        assert row.locator(".verify").get_attribute("data-status") == "OK"
    page.screenshot(path=str(SHOTS / "dashboard-model.png"), full_page=True)

    with page.expect_download() as download_info:
        page.click("#versions tbody tr[data-version='1'] a.download-cert")
    saved = tmp_path / "cert.json"
    download_info.value.save_as(saved)
    assert json.loads(saved.read_text()) == cert

    # --- a failed model -------------------------------------------------------------------
    page.goto(f"{base}/admin#/models/{seeded['failed']}")
    page.wait_for_selector("#model-error:not([hidden])")
    assert "training diverged" in page.inner_text("#model-error")
    assert page.inner_text("#model-status") == "failed"
    page.wait_for_selector("#no-versions:not([hidden])")
    assert "no releases yet" in (page.text_content("#chart-epsilon") or "")
    page.screenshot(path=str(SHOTS / "dashboard-failed-model.png"), full_page=True)

    # --- 1000 versions, paginated ----------------------------------------------------------
    page.goto(f"{base}/admin#/models/{seeded['many']}")
    page.wait_for_selector("#versions tbody tr[data-version='999']")
    assert page.inner_text("#versions-range") == "1–50 of 1000"
    assert page.locator("#versions tbody tr").count() == 50
    page.click("#versions-next")
    page.wait_for_selector("#versions tbody tr[data-version='949']")
    assert page.inner_text("#versions-range") == "51–100 of 1000"
    assert page.locator("#versions .verify[data-status=OK]").count() == 50
    assert page.locator("#chart-epsilon circle.pt-eps").count() == 1000
    assert _values(page, "#chart-epsilon line.retrain", "data-version") == [100 * k for k in range(1, 10)]
    assert page.inner_text("#ledger-count") == "1000"
    assert _values(page, "#jobs tbody td[data-value]") == [0.42]
    assert page.locator("#jobs progress").get_attribute("value") == "0.42"
    assert _values(page, "#queue-counts td[data-status=pending]") == [1]
    assert 299 <= float(page.get_attribute("#oldest-pending", "data-value")) < 900
    assert page.inner_text("#oldest-pending") == "5 min"
    assert "solver diverged" in page.inner_text("#recent-failures")
    page.screenshot(path=str(SHOTS / "dashboard-1000-versions.png"), full_page=True)

    page.click("#logout")
    assert page.evaluate("sessionStorage.getItem('lethe.adminKey')") is None
    assert not errors, errors
    context.close()
