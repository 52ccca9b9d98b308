"""The AI series in a real viewer: OHIF in Debian's Chromium, driven by Playwright, on a real Orthanc.

One Orthanc (:class:`OrthancServer`) holds two synthetic studies: a fractured DX film (the synthetic
data set's first fractured film, its fracture polygon the known region) with its SR
(:func:`monaifrac.dicom.sr.build_report`) and a secondary capture, and a film called normal with its
SR. MONAI Label 0.8.5 (``scripts/monailabel-serve --dicomweb URL --ohif``) serves its bundled OHIF
3.10 at ``/ohif/`` and forwards OHIF's DICOMweb requests to the PACS. One Chromium page goes through
the study list, the fractured study (film, SR, SC) and the normal study, in file order.

What is checked in the screenshots' pixels: where the film lies on the page is computed from the
viewport canvas and the film's size (OHIF fits the image to the canvas, centred), and proved by the
rendered film correlating with the film's own pixels there; the SR's outline must then be drawn
(OHIF's annotation colours, absent from the grey film and from the same view without the SR) at the
mapped outline vertices; the SC's overlay colour must show at the mapped fracture. Every page error
and console error from the app fails the test (requests to other hosts, which OHIF makes for web
fonts, are blocked and listed). The screenshots are kept in ``$MONAIFRAC_ARTEFACTS/ohif-browser``
(else a pytest temporary folder); the path is printed.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image, ImageDraw

from monaifrac.dicom import orthanc as orthanc_module
from monaifrac.dicom.films import write_dx
from monaifrac.dicom.seg import save_dataset
from monaifrac.dicom.sr import build_report, fracture_outlines
from monaifrac.dicom.web import push
from monaifrac.serving.client import MonaiLabelClient, free_port, stop_server
from tests.integration.conftest import PACS_ENV_NAMES, REPO, check_rc, find_chromium, run_cmd

pytestmark = pytest.mark.slow

FILM_H, FILM_W = 320, 384
VIEWPORT = {"width": 1400, "height": 900}
OVERLAY_RGB = (255, 0, 255)  # the secondary capture's fracture colour: in neither OHIF's UI nor the film
LOAD_S = 60  # the longest a page step may take


def _annotation(rgb: np.ndarray) -> np.ndarray:
    """Pixels in OHIF's annotation colours (green, or yellow when highlighted), anti-aliased on the film."""
    g, b = rgb[..., 1].astype(int), rgb[..., 2].astype(int)
    return g - b > 60  # the film is grey (g == b), OHIF's interface blue (b > g)


def _overlay(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return (r > 200) & (b > 200) & (g < 90)


def _secondary_capture(film, label: np.ndarray, grey: np.ndarray):
    """A minimal RGB secondary capture of the film with its fracture pixels painted, in the film's study."""
    import highdicom as hd

    rgb = np.repeat(grey[..., None], 3, axis=2)
    rgb[label == 2] = OVERLAY_RGB
    return hd.sc.SCImage.from_ref_dataset(film, rgb, "RGB", 8, "PATIENT", hd.UID(), 902, hd.UID(), 1, "monaifrac",
                                          patient_orientation=tuple(film.PatientOrientation))


def _films(folder: Path) -> dict:
    """The two studies, written into ``folder`` (films, SRs, SC) with what the test checks them against."""
    from monaifrac.data.synth import render_radiograph

    grey, polygons = render_radiograph(0, 0, FILM_W, FILM_H, True)
    mask = Image.new("L", (FILM_W, FILM_H), 0)
    ImageDraw.Draw(mask).polygon([tuple(p) for p in polygons[0]], fill=1)
    label = np.where(grey > 150, 1, 0).astype(np.uint8)
    label[np.asarray(mask) > 0] = 2
    pixels = np.round(grey.astype(np.float64) * (4095 / 255)).astype(np.uint16)
    film = write_dx(folder / "fractured.dcm", pixels, bits_stored=12, pixel_spacing=(0.143, 0.143),
                    patient_orientation=("L", "F"), patient_id="OHIF-FRACTURED", patient_name="Fractured^Film")
    save_dataset(build_report(film, label, 0.91, 0.5), folder / "fractured.sr.dcm")
    save_dataset(_secondary_capture(film, label, grey), folder / "fractured.sc.dcm")

    normal_grey, _ = render_radiograph(0, 1, FILM_W, FILM_H, False)
    normal_label = np.where(normal_grey > 150, 1, 0).astype(np.uint8)
    # no orientation, no spacing: the SR's image library without descriptors
    normal = write_dx(folder / "normal.dcm", np.round(normal_grey * (4095 / 255)).astype(np.uint16), bits_stored=12,
                      patient_id="OHIF-NORMAL", patient_name="Normal^Film")
    save_dataset(build_report(normal, normal_label, 0.08, 0.5), folder / "normal.sr.dcm")
    return {"fractured": film, "label": label, "grey": grey, "outline": fracture_outlines(label)[0],
            "normal": normal, "normal_grey": normal_grey}


class Page:
    """The one Chromium page, with what it logged and the screenshots it took."""

    def __init__(self, page, base: str, artefacts: Path):
        self.page, self.base, self.artefacts = page, base, artefacts
        self.errors: list[str] = []
        self.blocked: set[str] = set()
        self.confirmed = False
        page.route("**/*", self._route)
        page.on("pageerror", lambda err: self.errors.append(f"page error: {err}"))
        page.on("console", self._console)

    def _route(self, route) -> None:
        host = urlparse(route.request.url).hostname
        if host in ("127.0.0.1", "localhost") or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:  # nothing leaves the machine; OHIF asks for web fonts
            self.blocked.add(route.request.url)
            route.abort()

    def _console(self, message) -> None:
        if message.type != "error":
            return
        where = (message.location or {}).get("url", "")
        if message.text.startswith("Failed to load resource") and where in self.blocked:
            return
        self.errors.append(f"console error: {message.text} ({where})")

    def open(self, path: str) -> None:
        self.page.goto(self.base + path, wait_until="networkidle", timeout=LOAD_S * 1000)
        if not self.confirmed:  # OHIF's "investigational use" banner, over the viewport; once per browser
            self.page.get_by_text("Confirm and Hide").click(timeout=LOAD_S * 1000)
            self.confirmed = True

    def thumbnail(self, modality: str):
        return self.page.locator("[data-cy^=study-browser-thumbnail]", has_text=modality).first

    def shot(self, name: str) -> np.ndarray:
        path = self.artefacts / f"{name}.png"
        self.page.screenshot(path=str(path))
        return np.asarray(Image.open(path).convert("RGB"))

    def film_frame(self, shot: np.ndarray, grey: np.ndarray) -> tuple[float, float, float, float]:
        """(left, top, scale, correlation): where image pixel coordinates land on the page.

        The image is centred on the viewport canvas (OHIF's default camera for one image) and
        scaled to fit it less a margin cornerstone chooses; the scale is found as the one at which
        the screenshot best correlates with the film's own pixels, and that correlation is returned
        as the proof that the film is there.
        """
        box = self.page.locator("canvas.cornerstone-canvas").first.bounding_box()
        rows, cols = grey.shape
        fit = min(box["width"] / cols, box["height"] / rows)
        best = (-1.0, fit)
        for scale in fit * np.linspace(0.75, 1.0, 126):
            frame = (box["x"] + (box["width"] - cols * scale) / 2, box["y"] + (box["height"] - rows * scale) / 2, scale)
            best = max(best, (_film_correlation(shot, frame, grey), scale))
        corr, scale = best
        return (box["x"] + (box["width"] - cols * scale) / 2, box["y"] + (box["height"] - rows * scale) / 2, scale, corr)

    def settle(self, seconds: float = 2.0) -> None:
        """Let the viewport render (cornerstone draws after the DOM settles)."""
        self.page.wait_for_load_state("networkidle", timeout=LOAD_S * 1000)
        time.sleep(seconds)


def _film_correlation(shot: np.ndarray, frame, grey: np.ndarray) -> float:
    """Pearson correlation of the screenshot's grey at the mapped pixel centres with the film's pixels."""
    left, top, scale = frame[:3]
    rows, cols = np.mgrid[2:grey.shape[0] - 2:2, 2:grey.shape[1] - 2:2]
    x = np.round(left + (cols + 0.5) * scale).astype(int)
    y = np.round(top + (rows + 0.5) * scale).astype(int)
    seen = shot[np.clip(y, 0, shot.shape[0] - 1), np.clip(x, 0, shot.shape[1] - 1)].astype(float)
    plain = np.ptp(seen, axis=-1) == 0  # grey: the film; coloured: text or annotations over it
    seen, expected = seen[plain, 0], grey[rows, cols].astype(float)[plain]
    if plain.mean() < 0.9 or seen.std() == 0:
        return 0.0
    return float(np.corrcoef(seen, expected)[0, 1])


def _near(mask: np.ndarray, x: float, y: float, radius: int = 3) -> bool:
    xi, yi = int(round(x)), int(round(y))
    return bool(mask[max(yi - radius, 0):yi + radius + 1, max(xi - radius, 0):xi + radius + 1].any())


@pytest.fixture(scope="module")
def viewer(pacs, tmp_path_factory):
    """Films, SRs and SC in Orthanc; MONAI Label's OHIF on it; one Chromium page."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("no Playwright: `pip install playwright` (bash scripts/setup.sh installs it) to run the viewer test")
    chromium = find_chromium()
    root = tmp_path_factory.mktemp("ohif_browser")
    artefacts = Path(os.environ["MONAIFRAC_ARTEFACTS"]) / "ohif-browser" if os.environ.get("MONAIFRAC_ARTEFACTS") \
        else root / "screenshots"
    artefacts.mkdir(parents=True, exist_ok=True)
    print(f"\nOHIF browser test screenshots: {artefacts}")
    folder = root / "dicom"
    folder.mkdir()
    data = _films(folder)
    push(folder, pacs.dicomweb_url, *pacs.auth, films=True)

    check_rc(run_cmd(["bash", "scripts/monailabel-env.sh"], timeout=1800))
    port = free_port()
    log_path = root / "monailabel.log"
    env = {k: v for k, v in os.environ.items() if k not in PACS_ENV_NAMES and not k.startswith("MONAI_LABEL_")}
    env.update({orthanc_module.USER_ENV: pacs.auth[0], orthanc_module.PASSWORD_ENV: pacs.auth[1]})
    with log_path.open("w") as log:
        proc = subprocess.Popen(["scripts/monailabel-serve", "--dicomweb", pacs.dicomweb_url, "--ohif", "--port",
                                 str(port), "--app-dir", str(root / "app")], cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            MonaiLabelClient(f"http://127.0.0.1:{port}").wait_ready(proc, timeout=300, log=log_path)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
                try:
                    page = Page(browser.new_page(viewport=VIEWPORT), f"http://127.0.0.1:{port}/ohif", artefacts)
                    yield page, data
                    print(f"OHIF browser test screenshots: {artefacts}; requests blocked (other hosts): "
                          f"{sorted(page.blocked) or 'none'}")
                finally:
                    browser.close()
        finally:
            stop_server(proc)


def test_the_study_list_shows_both_studies_with_the_ai_series(viewer):
    page, data = viewer
    page.open("/")
    page.page.get_by_text("OHIF-FRACTURED").first.wait_for(timeout=LOAD_S * 1000)
    page.shot("1-study-list")
    for patient, modalities in (("OHIF-FRACTURED", "DX\\OT\\SR"), ("OHIF-NORMAL", "DX\\SR")):
        row = page.page.get_by_text(patient).first.locator("xpath=ancestor::tr[1]").inner_text()
        assert modalities in row, (patient, row)
    text = page.page.inner_text("body")
    assert "OHIF-FRACTURED" in text and "OHIF-NORMAL" in text
    assert page.errors == []


def test_the_sr_draws_the_fracture_outline_over_the_film(viewer):
    page, data = viewer
    page.open(f"/viewer?StudyInstanceUIDs={data['fractured'].StudyInstanceUID}")
    page.thumbnail("SR").wait_for(timeout=LOAD_S * 1000)
    labels = page.page.locator("[data-cy^=study-browser-thumbnail]").all_inner_texts()
    assert any(t.startswith("SR") and "monaifrac fracture 0.91 (fractured; threshold 0.50)" in " ".join(t.split())
               for t in labels), labels
    page.settle()
    film = page.shot("2-film")
    assert page.film_frame(film, data["grey"])[3] > 0.95  # the film is shown, and where the mapping says

    page.thumbnail("SR").dblclick()
    page.page.locator("svg.svg-layer polyline").nth(1).wait_for(timeout=LOAD_S * 1000)  # fracture 1 + film frame
    page.settle()
    shot = page.shot("3-sr-outline")
    left, top, scale, corr = page.film_frame(shot, data["grey"])
    assert corr > 0.95  # the SR viewport shows the film
    drawn, before = _annotation(shot), _annotation(film)
    vertices = [(left + x * scale, top + y * scale) for x, y in data["outline"]]
    hits = [_near(drawn, x, y) for x, y in vertices]
    assert np.mean(hits) >= 0.9, f"{sum(hits)} of {len(hits)} outline vertices drawn"
    assert not any(_near(before, x, y) for x, y in vertices)  # the colour is the SR's, not the film's
    # at the outline's place: 4 film pixels to either side (across the crack) most vertices miss it
    for dx in (-4, 4):
        assert np.mean([_near(drawn, x + dx * scale, y) for x, y in vertices]) < 0.5
    # an outline, not a fill: the fracture's inside, away from the edge, stays grey
    inside = np.argwhere(data["label"] == 2).mean(axis=0)
    assert not _near(drawn, left + (inside[1] + 0.5) * scale, top + (inside[0] + 0.5) * scale, radius=1)
    assert page.errors == []


def test_the_secondary_capture_displays(viewer):
    page, data = viewer
    page.thumbnail("OT").dblclick()
    page.settle(3.0)
    shot = page.shot("4-secondary-capture")
    left, top, scale, corr = page.film_frame(shot, data["grey"])
    assert corr > 0.9  # the capture is the film (its fracture pixels painted)
    painted = _overlay(shot)
    rows, cols = np.nonzero(data["label"] == 2)
    hits = [painted[int(top + (r + 0.5) * scale), int(left + (c + 0.5) * scale)] for r, c in zip(rows, cols)]
    assert np.mean(hits) > 0.8, f"{sum(hits)} of {len(hits)} fracture pixels shown in the overlay colour"
    assert painted.sum() < 2 * len(rows) * scale * scale  # and not elsewhere
    assert page.errors == []


def test_a_normal_films_report_opens_on_the_film(viewer):
    page, data = viewer
    page.open(f"/viewer?StudyInstanceUIDs={data['normal'].StudyInstanceUID}")
    page.thumbnail("SR").wait_for(timeout=LOAD_S * 1000)
    page.thumbnail("SR").dblclick()
    page.page.locator("svg.svg-layer polyline").first.wait_for(timeout=LOAD_S * 1000)  # the film frame
    page.settle()
    shot = page.shot("5-normal-sr")
    assert page.film_frame(shot, data["normal_grey"])[3] > 0.95
    assert page.page.locator("svg.svg-layer polyline").count() == 1  # no fracture outline
    assert "Probability: 0.08" in page.page.inner_text(".viewport-element") or \
        "Probability: 0.08" in page.page.locator("svg.svg-layer").first.inner_html()
    assert page.errors == []
