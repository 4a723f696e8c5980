"""Charts render Chinese with the bundled font only (system fonts hidden from matplotlib), as a PNG of the expected
size under WeCom's 2 MB, from several threads at once; no project module imports pyplot."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib.image

from jobs.charts import MAX_PNG, sample_trend, trend_chart

ROOT = Path(__file__).parent.parent

# In a fresh process: hide every font matplotlib found on the system (only its bundled DejaVu stays), turn warnings
# into errors and count the font manager's log warnings (findfont: … not found), then render.
HIDDEN = textwrap.dedent("""
    import logging, sys, warnings
    import matplotlib.font_manager as fm
    fm.fontManager.ttflist = [f for f in fm.fontManager.ttflist if "matplotlib" in f.fname]
    fm.fontManager.afmlist = []
    fm.fontManager._findfont_cached.cache_clear()
    fm._get_font.cache_clear()
    said = []
    class Catch(logging.Handler):
        def emit(self, record):
            said.append(record.getMessage())
    logging.getLogger("matplotlib.font_manager").addHandler(Catch(logging.WARNING))
    warnings.simplefilter("error")
    import jobs.charts as charts
    if sys.argv[1] == "without":  # the control: our font not registered — the same chart must complain
        charts._registered = True
    trend = charts.sample_trend()[0]
    if sys.argv[1] == "rare":  # outside GB 2312 and DejaVu (traditional hanzi, an emoji), and dollar signs
        import dataclasses
        trend = dataclasses.replace(trend, title="台灣麵線🍞（US$1）售價 $5 起", unit="㎏")
    png = charts.trend_chart(trend)
    print(len(png), len(said))
    if said:
        print("\\n".join(said[:3]))
""")


def run_hidden(mode: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLCONFIGDIR": str(tmp_path / "mpl"), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", HIDDEN, mode], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=120)


def test_chinese_renders_with_the_bundled_font_alone_and_without_it_it_would_not(tmp_path):
    ok = run_hidden("with", tmp_path)
    assert ok.returncode == 0, ok.stderr[-2000:]
    size, complaints = ok.stdout.split()[:2]
    assert int(size) > 10_000 and complaints == "0", ok.stdout
    control = run_hidden("without", tmp_path)  # proves the check can fail: tofu without the font
    assert control.returncode != 0 or control.stdout.split()[1] != "0", control.stdout
    assert "Glyph" in control.stderr + control.stdout or "findfont" in control.stderr + control.stdout


def test_characters_outside_the_font_become_a_box_without_a_warning(tmp_path):
    rare = run_hidden("rare", tmp_path)
    assert rare.returncode == 0, rare.stderr[-2000:]
    assert rare.stdout.split()[1] == "0", rare.stdout
    from jobs.charts import PLACEHOLDER, printable

    assert printable("台灣麵線🍞（US$1）") == f"台{PLACEHOLDER * 3}{PLACEHOLDER}（US\\$1）"  # 灣麵線 are not GB 2312
    assert printable("淡奶油 ≤ 5℃ · 12kg") == "淡奶油 ≤ 5℃ · 12kg"


CONFIG = textwrap.dedent("""
    import os, jobs.charts as charts
    png = charts.trend_chart(*charts.sample_trend())
    print(os.environ["MPLCONFIGDIR"])
""")


def run_config(home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MPLCONFIGDIR"}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT), TMPDIR=str(home.parent / "tmp"))
    (home.parent / "tmp").mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-W", "error", "-c", CONFIG], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)


def test_the_config_dir_is_kept_so_the_font_cache_is_built_once(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    first = run_config(home)
    assert first.returncode == 0, first.stderr[-2000:]
    kept = home / ".cache" / "jxcbot" / "matplotlib"
    assert first.stdout.strip() == str(kept) and "temporary" not in first.stderr
    [cache] = kept.glob("fontlist-*.json")
    built = cache.stat().st_mtime_ns
    second = run_config(home)
    assert second.returncode == 0 and "temporary" not in second.stderr, second.stderr[-2000:]
    assert cache.stat().st_mtime_ns == built  # read, not rebuilt


def test_without_a_writable_home_the_config_dir_falls_back_and_is_still_kept(tmp_path):
    home = tmp_path / "home"
    home.write_text("not a directory")  # ~/.cache cannot be made
    done = run_config(home)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(tmp_path / "tmp" / f"jxcbot-matplotlib-{os.getuid()}")
    assert list((tmp_path / "tmp" / f"jxcbot-matplotlib-{os.getuid()}").glob("fontlist-*.json"))


def test_the_png_decodes_at_the_expected_size_under_the_limit():
    png = trend_chart(*sample_trend())
    assert png.startswith(b"\x89PNG") and len(png) < MAX_PNG
    pixels = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert pixels.shape[:2] == (540, 960)  # 8 × 4.5 in at 120 dpi: ≥ 720 px wide for a phone


def test_renders_from_many_threads_at_once():
    with ThreadPoolExecutor(max_workers=8) as pool:
        pngs = list(pool.map(lambda _: trend_chart(*sample_trend()), range(20)))
    assert len({len(p) for p in pngs}) == 1 and all(p.startswith(b"\x89PNG") for p in pngs)


def test_no_project_module_imports_pyplot():
    imports = re.compile(r"^\s*(import matplotlib\.pyplot|from matplotlib(\.pyplot)? import .*pyplot|"
                         r"from matplotlib\.pyplot import)", re.M)
    offenders = [str(p.relative_to(ROOT)) for pkg in ("bot", "core", "handlers", "cards", "jobs", "cli")
                 for p in (ROOT / pkg).rglob("*.py") if imports.search(p.read_text(encoding="utf-8"))]
    assert offenders == []
