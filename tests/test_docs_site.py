"""The documentation: a short README whose links hold, and the MkDocs site
built in strict mode (a broken link or a missing image fails it), its pages
rendered in headless Chromium with every image loaded.

RL_TUNER_TF_SCREENSHOTS=DIR keeps a screenshot of every page there, to look
at."""
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_readme_is_short_and_its_links_hold():
  with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
    text = f.read()
  assert len(text.splitlines()) <= 150
  targets = [t for t in _LINK.findall(text) if "://" not in t]
  assert len(targets) >= 8
  for target in targets:
    path = os.path.join(ROOT, target.split("#")[0])
    assert os.path.exists(path), f"README links to missing {target}"


def test_results_page_is_the_current_state():
  """Dates and commit ids belong to CHANGELOG.md, not the results page."""
  with open(os.path.join(ROOT, "docs", "results.md"), encoding="utf-8") as f:
    text = f.read()
  assert not re.findall(r"\b20\d\d-\d\d-\d\d\b", text)
  assert not re.findall(r"\bcommit [0-9a-f]{7,}", text)
  assert os.path.exists(os.path.join(ROOT, "CHANGELOG.md"))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
  """The site built with ``mkdocs build --strict`` (mkdocs.yml)."""
  out = tmp_path_factory.mktemp("site")
  result = subprocess.run(
      [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
       "-f", os.path.join(ROOT, "mkdocs.yml"), "-d", str(out)],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stdout + result.stderr
  return out


def test_a_broken_link_fails_the_strict_build(tmp_path):
  docs = tmp_path / "docs"
  shutil.copytree(os.path.join(ROOT, "docs"), docs)
  with open(docs / "index.md", "a", encoding="utf-8") as f:
    f.write("\n![missing](figures/no_such_figure.png)\n")
  shutil.copy(os.path.join(ROOT, "mkdocs.yml"), tmp_path / "mkdocs.yml")
  result = subprocess.run(
      [sys.executable, "-m", "mkdocs", "build", "--strict", "-d",
       str(tmp_path / "site")], cwd=tmp_path, capture_output=True, text=True,
      timeout=300)
  assert result.returncode != 0
  assert "no_such_figure.png" in result.stdout + result.stderr


def _pages(site_dir):
  return sorted(os.path.relpath(os.path.join(folder, name), site_dir)
                for folder, _, names in os.walk(site_dir) for name in names
                if name == "index.html" and "search" not in folder)


def test_every_page_renders_in_chromium(site):
  from listening_study import simulate  # pylint: disable=g-import-not-at-top
  missing = [p for p in (simulate.CHROMIUM, simulate.CHROMEDRIVER)
             if not os.path.exists(p)]
  if missing:
    pytest.skip(f"{', '.join(missing)} missing: apt-get install chromium "
                "chromium-driver")
  pages = _pages(str(site))
  assert {"index.html", "guides/own_midi/index.html",
          "results/index.html", "speed/index.html"} <= set(pages), pages
  shots = os.environ.get("RL_TUNER_TF_SCREENSHOTS")
  driver = simulate.make_chromium_driver()
  try:
    driver.set_window_size(1280, 900)
    for page in pages:
      driver.get("file://" + os.path.join(str(site), page))
      heading = driver.execute_script(
          "var h = document.querySelector('div[role=main] h1');"
          "return h ? h.textContent : null;")
      assert heading, f"{page}: no heading"
      broken = driver.execute_script(
          "return Array.from(document.images).filter("
          "  i => !i.complete || i.naturalWidth === 0).map(i => i.src);")
      assert not broken, f"{page}: images not loaded: {broken}"
      if shots:
        os.makedirs(shots, exist_ok=True)
        driver.save_screenshot(os.path.join(
            shots, page.replace("/", "_").replace(".html", ".png")))
  finally:
    driver.quit()
