"""`dvc plots show` works offline: the page template inlines the pinned vega libraries, holds no network URL,
the top-level plots read the layout's tables, and a headless browser with no network draws every plot."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kdinterp.core import study

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "plots" / "page.html"
MANIFEST = ROOT / "plots" / "vendor" / "manifest.json"
INLINE = re.compile(r'<script data-package="([^"]+)">(.*?)</script>\n', re.DOTALL)
#: Anything that could name a remote resource: a scheme URL or a protocol-relative one in an attribute.
NETWORK = re.compile(r"(?:https?|wss?|ftp):|(?:src|href)\s*=|@import|url\(", re.IGNORECASE)


def _top_level_plots() -> dict[str, dict]:
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    return {name: props for entry in plots for name, props in entry.items()}


def test_template_holds_no_network_url_and_dvc_uses_it() -> None:
    """Outside the inlined libraries the page has no URL and loads nothing; DVC's CDN placeholder is absent."""
    page = TEMPLATE.read_text(encoding="utf-8")
    markup = INLINE.sub("", page)
    assert len(INLINE.findall(page)) == 3
    assert not NETWORK.search(markup), NETWORK.search(markup)
    assert "<script" not in markup                 # every script is one of the inlined libraries
    assert "{plot_divs}" in markup and "{scripts}" not in page   # DVC puts its CDN <script src> tags at {scripts}
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        configured = repo.config["plots"]["html_template"]
    assert (ROOT / ".dvc" / configured).resolve() == TEMPLATE  # relative to .dvc/, as `dvc plots show` reads it


def test_inlined_libraries_are_the_pinned_npm_builds_with_their_licences() -> None:
    """Each inlined script is byte for byte the file of the manifest's npm package, whose licence is vendored."""
    manifest = json.loads(MANIFEST.read_text())
    inlined = dict(INLINE.findall(TEMPLATE.read_text(encoding="utf-8")))
    assert [f"{p['name']}@{p['version']}" for p in manifest] == list(inlined)
    assert [p["name"] for p in manifest] == ["vega", "vega-lite", "vega-embed"]
    for package in manifest:
        code = inlined[f"{package['name']}@{package['version']}"].encode("utf-8")
        assert hashlib.sha256(code).hexdigest() == package["sha256"], package["name"]
        assert package["integrity"].startswith("sha512-")
        assert "Redistribution and use" in (ROOT / package["licence"]).read_text(), package["licence"]
    major = {p["name"]: int(p["version"].split(".")[0]) for p in manifest}
    assert major == {"vega": 5, "vega-lite": 5, "vega-embed": 6}   # DVC's specs: the vega-lite v5 schema


def test_top_level_plots_read_the_layout_tables_with_existing_templates() -> None:
    """Every plot-ready table of stage figures is drawn, each plot's template is in .dvc/plots, its x and y are
    columns of its file (the committed tables of the default run)."""
    plots = _top_level_plots()
    layout = study.Layout()
    drawn = {Path(file) for props in plots.values() for file in props["y"]}
    assert {layout.plot_table(name) for name in study.PLOT_TABLES} <= drawn
    for name, props in plots.items():
        template = ROOT / ".dvc" / "plots" / f"{props['template']}.json"
        assert "<DVC_METRIC_DATA>" in template.read_text(), name
        for file, y in props["y"].items():
            header = (ROOT / file).read_text().splitlines()[0].split(",")
            assert {props["x"], y, "seed"} <= set(header), (name, file)


def _chromium() -> str | None:
    return next((found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))),
                None)


def _dvc() -> str:
    """The dvc of this interpreter's environment (.venv/bin), else the one on PATH."""
    beside = Path(sys.executable).with_name("dvc")
    return str(beside) if beside.exists() else shutil.which("dvc") or "dvc"


def _render(browser: str, page: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    """Open ``page`` in headless chromium with every host unresolvable and a dead proxy: no network."""
    return subprocess.run([browser, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
                           f"--user-data-dir={tmp / 'profile'}", "--proxy-server=127.0.0.1:9",
                           "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=8000", *args,
                           page.as_uri()], capture_output=True, text=True, timeout=90, check=True)


@pytest.mark.skipif(_chromium() is None, reason="no chromium on PATH (.ci/run installs it: apt-get install chromium)")
def test_plots_page_renders_offline_with_curves(tmp_path) -> None:
    """`dvc plots show` writes a page that chromium, with no network, draws: one vega view per plot, with
    coloured curves in the screenshot; the same page without the inlined libraries (DVC's default) is blank."""
    import numpy as np
    from PIL import Image

    browser = _chromium()
    out = tmp_path / "dvc_plots"
    subprocess.run([_dvc(), "plots", "show", "-o", str(out)], cwd=ROOT, check=True,
                   capture_output=True, text=True, timeout=120)
    page = out / "index.html"
    html = page.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc=", html)        # no CDN script: DVC's {scripts} went nowhere
    dom = _render(browser, page, tmp_path, "--dump-dom").stdout
    n = len(_top_level_plots())
    assert dom.count('class="vega-embed') == n and dom.count("<canvas") == n, dom[-2000:]

    shot = tmp_path / "page.png"
    _render(browser, page, tmp_path, "--window-size=1400,1300", f"--screenshot={shot}")
    rgb = np.asarray(Image.open(shot).convert("RGB"), dtype=int)
    coloured = int((rgb.max(axis=2) - rgb.min(axis=2) > 80).sum())   # curves are coloured; axes and text are grey
    assert coloured > 5000, coloured

    blank = tmp_path / "blank.html"    # the negative control: the libraries gone, as on DVC's CDN page offline
    blank.write_text(INLINE.sub("", html), encoding="utf-8")
    dom = _render(browser, blank, tmp_path, "--dump-dom").stdout
    assert "<canvas" not in dom and 'class="vega-embed' not in dom
