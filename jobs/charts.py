"""Charts for the pushes: matplotlib's object API on Agg (never pyplot in the server), the bundled CJK font registered
explicitly, a writable MPLCONFIGDIR kept across starts (so the font cache is built once), rendered in a worker thread
by the caller (JobContext.heavy) — PNG, 960 × 540 px, well under WeCom's 2 MB image limit."""

from __future__ import annotations

import functools
import io
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

log = logging.getLogger(__name__)

FONT = Path(__file__).parent / "fonts" / "NotoSansSC-GB2312.otf"
FAMILY = "Noto Sans CJK SC"
WIDTH_IN, HEIGHT_IN, DPI = 8.0, 4.5, 120  # 960 × 540 px: readable on a phone, a few tens of KB
MAX_PNG = 2 * 1024 * 1024
PLOT_LEFT, PLOT_RIGHT = 0.08, 0.98  # the trend chart's axes, as fractions of the figure's width

PLACEHOLDER = "□"  # drawn for a character neither the bundled font nor DejaVu Sans has (instead of a warning)


def config_dir() -> str:
    """A writable MPLCONFIGDIR, kept across starts: $MPLCONFIGDIR, else ~/.cache/jxcbot/matplotlib, else (no
    writable home, e.g. a service user) jxcbot-matplotlib-<uid> in the temporary directory — never a fresh one."""
    for candidate in filter(None, (os.environ.get("MPLCONFIGDIR"),
                                   str(Path.home() / ".cache" / "jxcbot" / "matplotlib"),
                                   str(Path(tempfile.gettempdir()) / f"jxcbot-matplotlib-{os.getuid()}"))):
        try:
            Path(candidate).mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(candidate, os.W_OK | os.X_OK):
            return candidate
        log.warning("matplotlib config directory %s is not writable; trying the next one", candidate)
    return ""  # matplotlib makes its own temporary one (and says so)


# matplotlib reads MPLCONFIGDIR once, at import: a writable, persistent one (else it warns and rebuilds its font cache
# in a temporary directory on every start).
if _dir := config_dir():
    os.environ["MPLCONFIGDIR"] = _dir

import matplotlib  # noqa: E402

matplotlib.use("Agg")
from matplotlib import dates as mdates  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ft2font import FT2Font  # noqa: E402

_ready = threading.Lock()
_registered = False


def use_font() -> None:
    """Register the bundled font once (thread-safe) and make it the sans-serif of every chart."""
    global _registered
    with _ready:
        if _registered:
            return
        font_manager.fontManager.addfont(str(FONT))
        matplotlib.rcParams.update({"font.family": "sans-serif", "font.sans-serif": [FAMILY, "DejaVu Sans"],
                                    "axes.unicode_minus": False})
        _registered = True


@functools.cache
def _drawable() -> frozenset[int]:
    """The code points the bundled font or DejaVu Sans (matplotlib's own fallback) has a glyph for."""
    dejavu = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    return frozenset(FT2Font(str(FONT)).get_charmap()) | frozenset(FT2Font(str(dejavu)).get_charmap())


def printable(text: str) -> str:
    """Text as the chart can draw it: a character outside the bundled GB 2312 subset and DejaVu Sans (a rare or
    traditional hanzi, an emoji) becomes □ — no "Glyph missing" warning, no tofu of unknown width — and a dollar sign
    is escaped (a product name with two would otherwise be read as mathtext)."""
    drawable = _drawable()
    out = "".join(c if ord(c) in drawable or c in "\n\t" else PLACEHOLDER for c in text)
    return out.replace("$", r"\$")


@dataclass(frozen=True)
class Trend:
    """A product's last 30 days and what is ahead: daily sales, closing on-hand stock, the safety line, and the
    pre-orders (delivery day, quantity) of the next days."""

    title: str
    unit: str
    days: tuple[date, ...]
    sales: tuple[float, ...]
    on_hand: tuple[float, ...]
    safety: float
    preorders: tuple[tuple[date, float], ...] = ()


def trend_chart(t: Trend) -> bytes:
    """The 30-day trend as a PNG (CPU work: call it in a worker thread)."""
    use_font()
    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    ax = fig.add_subplot()
    last = t.days[-1] if t.days else date.today()
    end = max([last, *(d for d, _ in t.preorders)]) + timedelta(days=1)
    start = t.days[0] - timedelta(days=1) if t.days else last
    # The daily sales as one collection of thick vertical lines, 0.8 day wide (ax.bar makes an artist per day, about
    # a sixth of the render time): the plot's width in points ÷ the days shown.
    day_pt = WIDTH_IN * (PLOT_RIGHT - PLOT_LEFT) * 72 / max((end - start).days, 1)
    ax.vlines(t.days, 0, t.sales, color="#8fb8de", linewidth=0.8 * day_pt, capstyle="butt",
              label=printable(f"日销量（{t.unit}）"))
    ax.plot(t.days, t.on_hand, color="#1f5aa6", linewidth=2, marker="o", markersize=3, label="在库")
    ax.axhline(t.safety, color="#d62728", linestyle="--", linewidth=1.5, label=f"安全库存 {t.safety:g}")
    if t.preorders:
        ax.scatter([d for d, _ in t.preorders], [q for _, q in t.preorders], marker="v", s=70, color="#ff7f0e",
                   zorder=3, label="预订单（交货日）")
        for d, q in t.preorders:
            ax.annotate(f"{q:g}", (d, q), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=9)
    ax.set_xlim(start, end)
    ax.xaxis.set_major_locator(mdates.DayLocator(interval=5))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))
    ax.set_title(printable(t.title), fontsize=13)
    ax.set_ylabel(printable(t.unit))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper right", fontsize=9, framealpha=0.8)
    fig.subplots_adjust(left=PLOT_LEFT, right=PLOT_RIGHT, top=0.9, bottom=0.1)  # fixed: tight_layout costs a draw
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    data = buf.getvalue()
    if len(data) > MAX_PNG:  # never at this size and dpi; a chart over WeCom's limit must not go out silently
        raise ValueError(f"chart PNG of {len(data)} bytes exceeds {MAX_PNG}")
    return data


def comparison_chart(title: str, names: list[str], suggested: list[float], consumed: list[float]) -> bytes:
    """Suggested vs consumed per product, two bars side by side (the hit-rate board's chart; CPU work)."""
    use_font()
    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    ax = fig.add_subplot()
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], suggested, width=0.4, color="#8fb8de", label="建议量")
    ax.bar([x + 0.2 for x in xs], consumed, width=0.4, color="#1f5aa6", label="实际消耗")
    many = len(names) > 5
    ax.set_xticks(list(xs), [printable(n) for n in names], rotation=20 if many else 0, ha="right" if many else "center",
                  fontsize=9)
    ax.set_title(printable(title), fontsize=13)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper right", fontsize=9)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.9, bottom=0.2)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def sample_trend() -> tuple[Trend]:
    """A realistic 30-day trend (for the benchmark and tests)."""
    today = date(2026, 12, 7)
    days = tuple(today - timedelta(days=29 - i) for i in range(30))
    sales = tuple(float(8 + (i * 7) % 9 + (6 if d.weekday() >= 5 else 0)) for i, d in enumerate(days))
    stock, on_hand = 260.0, []
    for i, s in enumerate(sales):
        stock = stock - s + (120 if i in (9, 19) else 0)
        on_hand.append(stock)
    return (Trend("淡奶油（RM-CREAM）近30天趋势：在库低于安全库存", "kg", days, sales, tuple(on_hand), 80.0,
                  ((today + timedelta(days=2), 40.0), (today + timedelta(days=5), 60.0))),)
