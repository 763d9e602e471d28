#!/usr/bin/env python3
"""Vendor vega, vega-lite and vega-embed into DVC's plots page template (run by hand; needs the network).

``dvc plots show`` fills an HTML template (``plots.html_template`` in .dvc/config). DVC's own page
loads the three libraries from a CDN and is blank offline. This script downloads the pinned npm
tarballs from the registry, checks each against the integrity pinned below (the registry's
``dist.integrity``), and writes

* ``plots/page.html``: the template, with each library's minified build inlined in a ``<script>``
  element (the page works wherever ``dvc plots show -o`` writes it, and loads nothing);
* ``plots/vendor/<package>.LICENSE``: each package's licence (vega's npm tarball has none; its
  text is the vega repository's LICENSE, kept in this folder and left as it is);
* ``plots/vendor/manifest.json``: name, version, tarball, integrity, the file inlined and its sha256,
  which tests/test_plots.py checks against the template.

To update: change PINS (versions compatible with the vega-lite v5 schema that DVC emits; vega 6
and vega-lite 6 are ES modules only, vega-embed 7 needs them), then ``python scripts/vendor_vega.py``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLOTS = ROOT / "plots"
VENDOR = PLOTS / "vendor"
TEMPLATE = PLOTS / "page.html"
REGISTRY = "https://registry.npmjs.org"

#: (package, version, file inlined, the registry's dist.integrity of the tarball), in load order.
PINS = (
    ("vega", "5.33.1", "build/vega.min.js",
     "sha512-1fArfVDUqVbb5z8n+/nVQb+VNBzx8svY6CrsyTK4Ujm4yrd9I1auoKxBAPXLCavY1LcrbHUskQbGUP8gXOzyQw=="),
    ("vega-lite", "5.23.0", "build/vega-lite.min.js",
     "sha512-l4J6+AWE3DIjvovEoHl2LdtCUkfm4zs8Xxx7INwZEAv+XVb6kR6vIN1gt3t2gN2gs/y4DYTs/RPoTeYAuEg6mA=="),
    ("vega-embed", "6.29.0", "build/vega-embed.min.js",
     "sha512-PmlshTLtLFLgWtF/b23T1OwX53AugJ9RZ3qPE2c01VFAbgt3/GSNI/etzA/GzdrkceXFma+FDHNXUppKuM0U6Q=="),
)

HEAD = """<!DOCTYPE html>
<!-- DVC's plots page for kdinterp (.dvc/config plots.html_template), written by scripts/vendor_vega.py: do
     not edit by hand. {libraries} are inlined below (licences: plots/vendor/), so the page
     that `dvc plots show` writes loads nothing from the network. DVC fills refresh_tag and plot_divs; the
     scripts placeholder, where DVC would put its CDN script tags, is deliberately absent. -->
<html>
<head>
<meta charset="utf-8">
{refresh_tag}
<title>kdinterp: DVC plots</title>
"""
TAIL = """<style>
body { font-family: sans-serif; margin: 16px; }
body > div { display: inline-block; vertical-align: top; margin: 8px; }
</style>
</head>
<body>
{plot_divs}
</body>
</html>
"""


def _download(name: str, version: str, integrity: str) -> bytes:
    """The package's npm tarball, checked against ``integrity``."""
    url = f"{REGISTRY}/{name}/-/{name}-{version}.tgz"
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (a fixed https URL)
        data = response.read()
    algorithm, expected = integrity.split("-", 1)
    actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if actual != expected:
        raise SystemExit(f"{url}: integrity {algorithm}-{actual} is not the pinned {integrity}")
    return data


def _member(tarball: bytes, path: str) -> bytes | None:
    with tarfile.open(fileobj=io.BytesIO(tarball)) as tar:
        try:
            member = tar.extractfile(f"package/{path}")
        except KeyError:
            return None
        return member.read() if member else None


def main() -> None:
    """Download the pinned packages and write the template, the licences and the manifest."""
    VENDOR.mkdir(parents=True, exist_ok=True)
    scripts, manifest = [], []
    for name, version, path, integrity in PINS:
        tarball = _download(name, version, integrity)
        code = _member(tarball, path)
        if code is None:
            raise SystemExit(f"{name}@{version} has no {path}")
        text = code.decode("utf-8")
        for forbidden in ("</script", "{plot_divs}", "{refresh_tag}", "{scripts}"):
            if forbidden in text:   # would end the inline script, or be filled by DVC
                raise SystemExit(f"{name}@{version} {path} holds {forbidden!r}: it cannot be inlined as is")
        licence = _member(tarball, "LICENSE")
        licence_file = VENDOR / f"{name}.LICENSE"
        if licence is not None:
            licence_file.write_bytes(licence)
        elif not licence_file.exists():
            raise SystemExit(f"{name}@{version} ships no LICENSE: put its repository's LICENSE in {licence_file}")
        scripts.append(f'<script data-package="{name}@{version}">{text}</script>\n')
        manifest.append({"name": name, "version": version, "tarball": f"{REGISTRY}/{name}/-/{name}-{version}.tgz",
                         "integrity": integrity, "file": path, "sha256": hashlib.sha256(code).hexdigest(),
                         "licence": licence_file.relative_to(ROOT).as_posix()})
    libraries = ", ".join(f"{name} {version}" for name, version, _, _ in PINS)
    TEMPLATE.write_text(HEAD.replace("{libraries}", libraries) + "".join(scripts) + TAIL, encoding="utf-8")
    (VENDOR / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {TEMPLATE.relative_to(ROOT)} ({TEMPLATE.stat().st_size} bytes): {libraries}")


if __name__ == "__main__":
    main()
