"""The reports in a real browser. Headless Chromium opens, from disk and offline, a claims report.html, the
`lnprobe runs` index and a plotly heatmap page, and screenshots them; each screenshot must show the page
drawn (a share of non-white pixels that a blank page, 0 %, does not reach), the report its embedded figure
and the heatmap its cells (coloured pixels, which a heatmap page whose plotly.min.js did not load lacks:
checked on such a page too), and the browser must log no console message (a script error such as "Plotly
is not defined" is one).

Skipped when no Chromium is installed; `.ci/run` installs Debian's `chromium` so CI runs it.
`python tests/report/test_browser.py PAGE.html OUT.png` screenshots one page the same way, cropped to
what it draws and shrunk (how docs/images/report.png was made from `lnprobe demo`'s claims report).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> tuple[str | None, str]:
    """(the Chromium executable, or None and why not)."""
    for name in NAMES:
        path = shutil.which(name)
        if path and Path(path).resolve().parts[1:2] == ("snap",):
            return None, f"{path} is a snap, which cannot read pytest's temporary files"
        if path:
            return path, ""
    return None, f"no Chromium on PATH ({', '.join(NAMES)}); `.ci/run` installs Debian's `chromium`"


BROWSER, WHY_NOT = find_browser()
pytestmark = pytest.mark.skipif(BROWSER is None, reason=WHY_NOT)
SIZE = (1200, 900)
# Shares of a screenshot's pixels, set between what a blank or broken page and the real pages measure (see
# test_the_page_is_drawn_without_console_errors): INK not near-white, COLOUR saturated (not grey or white).
INK, COLOUR = 0.01, 0.05


def screenshot(page: Path, png: Path, size: tuple[int, int] = SIZE) -> list[str]:
    """Draw `page` headless into `png` (scripts run: a virtual-time budget); returns the console lines."""
    profile = tempfile.mkdtemp(prefix="chromium-profile-")  # never the user's profile
    args = [
        BROWSER, "--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage",
        "--hide-scrollbars", "--no-first-run", f"--user-data-dir={profile}",
        f"--window-size={size[0]},{size[1]}",
        # every compositor stage before the screenshot: without it, under load, the bottom of the page was
        # sometimes left unpainted (3 of 6 runs)
        "--run-all-compositor-stages-before-draw", "--virtual-time-budget=5000",
        "--enable-logging=stderr", "--v=0", f"--screenshot={png}", page.resolve().as_uri(),
    ]  # fmt: skip
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    if not png.is_file():
        raise RuntimeError(
            f"{BROWSER} wrote no screenshot of {page} (exit {proc.returncode}): {proc.stderr[-2000:]}"
        )
    return [line for line in proc.stderr.splitlines() if re.search(r":CONSOLE[(:]", line)]


def shares(png: Path) -> tuple[float, float]:
    """(share of non-white pixels, share of coloured pixels) of the screenshot."""
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    ink = (rgb.min(axis=2) < 245).mean()
    colour = (rgb.max(axis=2) - rgb.min(axis=2) > 60).mean()
    return float(ink), float(colour)


def claims_record(similarity: dict) -> dict:
    """A claims record as `lnprobe claims` writes it (its verdict rules, the real similarity numbers for LN
    and made-up ones for the rest): the browser check needs a report, not a 14 s claims run."""
    from lnprobe.claims.verdicts import interval_test, sign_verdict
    from lnprobe.provenance import provenance

    ln = {m: e["cross_layer_mean"] for m, e in similarity["metrics"].items()}
    full = {m: {"value": s["value"] + 0.05, "ci95": [c + 0.05 for c in s["ci95"]]} for m, s in ln.items()}
    sim_tests = {
        m: interval_test(
            ln[m]["value"] - full[m]["value"],
            [a - b for a, b in zip(ln[m]["ci95"], full[m]["ci95"], strict=True)],
            "lower",
            0.02,
        ).as_dict()
        for m in ("cka", "cosine")
    }
    grads = {
        "ln": {
            "variance": 2e-4,
            "ci95": [1e-4, 3e-4],
            "samples": 8,
            "source": "offline per-example gradients",
        },
        "full": {
            "variance": 5e-4,
            "ci95": [3e-4, 7e-4],
            "samples": 8,
            "source": "offline per-example gradients",
        },
    }
    grad_test = interval_test(np.log(2e-4 / 5e-4), (np.log(0.3), np.log(0.6)), "lower", np.log(1.25))
    domain_test = sign_verdict([(0.2, 0.3)] * 3 + [(0.3, 0.2)])
    claims = [
        {"id": "cross_layer_similarity", "statement": "LN-tuned models have lower cross-layer similarity",
         "definition": "mean off-diagonal linear CKA", "numbers": {"ln": ln, "full": full},
         "verdict": sim_tests["cka"]["verdict"], "tests": sim_tests},
        {"id": "gradient_variance", "statement": "LN tuning gives smaller gradient variance",
         "definition": "tr(Σ)/p of the norm-weight gradients", "numbers": grads, "verdict": grad_test.verdict,
         "tests": {"log_variance": grad_test.as_dict(), "ratio_ln_over_full": 0.4}},
        {"id": "domain_adaptation", "statement": "the tuned norms bring image tokens closer to text tokens",
         "definition": "image-vs-text gap at each norm's output",
         "numbers": {"gap": {"base": 0.3, "tuned": 0.2}},
         "verdict": domain_test.verdict, "tests": {"sign_test": domain_test.as_dict()}},
    ]  # fmt: skip
    return {
        "models": {"base": "tiny", "ln": "tiny", "full": "tiny-perturbed"},
        "claims": claims,
        "caveats": ["made up for the browser test"],
        "provenance": provenance(seed=0),
    }


@pytest.fixture(scope="module")
def tree(tmp_path_factory, tiny_dir):
    """A results tree: data, a claims folder (its report, with a real similarity probe inside whose
    heatmap pages load the probe folder's plotly.min.js) and the `lnprobe runs` index over it all."""
    from lnprobe import cli
    from lnprobe.data.synth import SynthConfig, write_synth
    from lnprobe.io import write_json, write_marker

    root = tmp_path_factory.mktemp("browser")
    data = write_synth(root / "data", SynthConfig(n=24, seed=0))
    claims = root / "claims"
    sim = claims / "probes" / "similarity-ln"
    argv = ["similarity", tiny_dir, "--data", str(data / "instruct.json"), "--n", "8", "--batch-size", "4"]
    assert cli.main([*argv, "--bootstrap", "10", "--out", str(sim)]) == 0
    write_json(claims / "claims.json", claims_record(json.loads((sim / "similarity.json").read_text())))
    write_marker(claims, "claims")
    assert cli.main(["report", str(claims)]) == 0
    assert cli.main(["runs", str(root)]) == 0
    return root


# (page, window, coloured pixels expected: the claims report's embedded CKA figure, the heatmap's cells)
PAGES = [
    ("claims/report.html", (1200, 1400), True),
    ("runs-index/index.html", SIZE, False),
    ("claims/probes/similarity-ln/similarity_cka.html", SIZE, True),
]


# Measured (Chromium 156, Debian 12), as (non-white, coloured) shares: a blank page (0 %, 0 %) and the heatmap
# without its plotly.min.js (0 %, 0 %); the claims report (20.5 %, 15.5 %), the runs index (4.5 %, 0.1 %),
# the heatmap (55.7 %, 55.0 %).
@pytest.mark.parametrize("page, size, coloured", PAGES, ids=["claims-report", "runs-index", "heatmap"])
def test_the_page_is_drawn_without_console_errors(tree, tmp_path, page, size, coloured):
    png = tmp_path / "page.png"
    console = screenshot(tree / page, png, size)
    assert not console, console
    assert Image.open(png).size == size
    ink, colour = shares(png)
    assert ink > INK, f"{page}: {ink:.2%} of the pixels drawn"
    if coloured:
        assert colour > COLOUR, f"{page}: {colour:.2%} of the pixels coloured (no figure drawn)"


def test_a_blank_page_and_a_heatmap_without_plotly_fail_the_checks(tree, tmp_path):
    (tmp_path / "blank.html").write_text("<!doctype html><html><body></body></html>\n")
    assert not screenshot(tmp_path / "blank.html", tmp_path / "blank.png")
    ink, colour = shares(tmp_path / "blank.png")
    assert ink < INK and colour < COLOUR
    broken = tmp_path / "broken.html"  # the page alone: its relative plotly.min.js is not there
    shutil.copy(tree / "claims" / "probes" / "similarity-ln" / "similarity_cka.html", broken)
    console = screenshot(broken, tmp_path / "broken.png")
    assert any("Plotly is not defined" in line for line in console), console  # console lines are caught
    assert shares(tmp_path / "broken.png")[1] < COLOUR


def main(page: str, out: str, height: int = 1700, width: int = 800, max_bytes: int = 200_000) -> None:
    """Screenshot `page` (1200 x `height`) to `out`: cut after the last whole block (at the last blank band of
    30+ rows), cropped to what it draws, `width` pixels wide, 256 colours, under `max_bytes`."""
    if BROWSER is None:
        sys.exit(WHY_NOT)
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "page.png"
        console = screenshot(Path(page), png, (1200, height))
        image = Image.open(png).convert("RGB")
    if console:
        print("\n".join(console), file=sys.stderr)
    ink = np.asarray(image).astype(int).min(axis=2) < 245
    rows, cols = np.nonzero(ink.any(axis=1))[0], np.nonzero(ink.any(axis=0))[0]
    bands = [(a, b) for a, b in zip(rows[:-1], rows[1:], strict=True) if b - a > 30]
    bottom = bands[-1][0] + 12 if bands else rows[-1] + 1
    box = (
        max(cols[0] - 12, 0),
        max(rows[0] - 12, 0),
        min(cols[-1] + 13, image.width),
        min(bottom, image.height),
    )
    image = image.crop(box)
    image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    size = Path(out).stat().st_size
    print(f"wrote {out}: {image.width} x {image.height}, {size / 1000:.0f} kB")
    if size > max_bytes:
        sys.exit(f"{out}: {size} bytes, over {max_bytes}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
