"""The report's plots, as PNG bytes: confidence histograms, timelines, counts by hour and day.

matplotlib's ``Figure`` directly (Agg, no pyplot state), imported only here. Text in plots
is never parsed as mathtext (``text.parse_math`` off, ``usetex`` off): a file named
``$x$.wav`` is drawn as written.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

COLOURS = {"screaming": "#d62728", "cry": "#ff7f0e", "not_screaming": "#7f7f7f"}
OTHER_COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")
HMS_AFTER_S = 120.0  # timelines longer than this get h:mm:ss ticks
# Clock-like tick spacings (1 min ... 1 day); the first giving at most MAX_TICKS ticks is used.
TICK_STEPS_S = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
MAX_TICKS = 10
DPI = 100


def colour(label: str, labels: Sequence[str]) -> str:
    if label in COLOURS:
        return COLOURS[label]
    return OTHER_COLOURS[list(labels).index(label) % len(OTHER_COLOURS)] if label in labels \
        else OTHER_COLOURS[0]


@contextmanager
def _plain_text() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        yield


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def hms(seconds: float | None) -> str:
    """``3725.0`` -> ``1:02:05``."""
    if seconds is None:
        return ""
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def confidence_plot(values: Mapping[str, Any], title: str) -> bytes:
    """One confidence histogram in [0, 1] per label, side by side."""
    with _plain_text():
        from matplotlib.figure import Figure

        labels = [k for k, v in values.items() if len(v)] or ["(none)"]
        fig = Figure(figsize=(min(3.2 * len(labels), 12), 2.6), layout="constrained")
        axes = fig.subplots(1, len(labels), squeeze=False)[0]
        bins = [i / 20 for i in range(21)]
        for ax, label in zip(axes, labels, strict=True):
            vals = values.get(label, [])
            if len(vals):
                ax.hist(vals, bins=bins, color=colour(label, labels), edgecolor="white")
            ax.set_xlim(0, 1)
            ax.set_title(f"{label} ({len(vals)})", fontsize="medium")
            ax.set_xlabel("confidence")
        axes[0].set_ylabel("count")
        fig.suptitle(title)
        return _png(fig)


def timeline_plot(path: str, duration_s: float | None, events: Sequence[Mapping[str, Any]],
                  segments: Sequence[Mapping[str, Any]], targets: Sequence[str],
                  thresholds: Mapping[str, float]) -> bytes:
    """One file: window probabilities over time (when known), its events shaded, and each
    class's detection threshold as a dashed line; h:mm:ss ticks on long files."""
    with _plain_text():
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter, MultipleLocator

        fig = Figure(figsize=(9, 2.4))
        ax = fig.subplots()
        for e in events:
            ax.axvspan(e["start_s"], e["end_s"], color=colour(e["label"], targets), alpha=0.25,
                       linewidth=0)
        if segments:
            t = [(s["start_s"] + s["end_s"]) / 2 for s in segments]
            for c in targets:
                if f"prob_{c}" in segments[0]:
                    ax.plot(t, [s[f"prob_{c}"] for s in segments], label=f"P({c})",
                            color=colour(c, targets), linewidth=1.5)
            for c in targets:
                if c in thresholds:
                    ax.axhline(thresholds[c], color=colour(c, targets), linestyle="--",
                               linewidth=0.9, label=f"threshold {c} {thresholds[c]:.2f}")
            ax.set_ylim(0, 1)
            ax.set_ylabel("probability")
            ax.legend(loc="upper right", fontsize="x-small", ncols=2)
        else:
            ax.set_yticks([])
        end = duration_s or max([e["end_s"] for e in events] + [1.0])
        ax.set_xlim(0, end)
        if end > HMS_AFTER_S:
            step = next((s for s in TICK_STEPS_S if end / s <= MAX_TICKS), end / MAX_TICKS)
            ax.xaxis.set_major_locator(MultipleLocator(step))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: hms(x)))
            ax.set_xlabel("time (h:mm:ss)")
        else:
            ax.set_xlabel("time (s)")
        ax.set_title(Path(path).name + "  (shaded: events)", fontsize="medium", loc="left")
        return _png(fig)


def counts_plot(rows: Sequence[Mapping[str, Any]], key: str, targets: Sequence[str],
                title: str) -> bytes:
    """Events per class (stacked bars) per hour of day or per day."""
    with _plain_text():
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9, 2.6), layout="constrained")
        ax = fig.subplots()
        x = list(range(len(rows)))
        bottom = [0] * len(rows)
        for c in targets:
            heights = [r.get(f"events_{c}", 0) for r in rows]
            ax.bar(x, heights, bottom=bottom, color=colour(c, targets), label=c)
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        step = max(1, len(rows) // 24)
        ax.set_xticks(x[::step], [str(r[key]) for r in rows][::step],
                      rotation=0 if key == "hour" else 45, fontsize="small")
        ax.set_xlabel("hour of day" if key == "hour" else "day")
        ax.set_ylabel("events")
        ax.set_title(title, fontsize="medium", loc="left")
        if targets:
            ax.legend(fontsize="small")
        return _png(fig)
