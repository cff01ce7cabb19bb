"""``report.md`` of a detection head: clips, soundscapes, threshold sweep, calibration, plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.detect_config import DetectConfig
from training.detect_eval import sweep_key
from training.report import _fmt, _table

REPORT_MD = "report.md"
RELIABILITY_PNG = "reliability.png"
SWEEP_PNG = "threshold_sweep.png"

_CLIP_TITLES = {
    "test_events": "test clips, file verdict from events (as the scan labels files)",
    "test_events_bandlimited": "test clips band-limited to 4 kHz, verdict from events",
    "test_events_v2": "test clips of the v2 kinds (hard negatives, new cries), from events",
    "test_events_v2_bandlimited": "v2 test clips, band-limited, from events",
    "test_pooled": "test clips, whole-clip mean (mean_prob_* columns)",
    "test_pooled_bandlimited": "test clips band-limited, whole-clip mean",
}


def plot_reliability(calibration: dict[str, Any], path: Path) -> Path:
    """Top-label reliability before and after temperature scaling, and per-class curves."""
    from training.plots import _figure, _save

    fig = _figure(10, 4.5)
    ax = fig.add_subplot(1, 2, 1)
    for key, style in (("before", "o--"), ("after", "o-")):
        bins = [b for b in calibration[key]["bins"] if b["n"]]
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], style,
                label=f"{key} (ECE {calibration[key]['ece']:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
    ax.set(xlabel="confidence (top class)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
           title=f"validation windows, T = {calibration['temperature']:.2f}")
    ax.legend()
    ax2 = fig.add_subplot(1, 2, 2)
    for c, rel in calibration["per_class_after"].items():
        bins = [b for b in rel["bins"] if b["n"]]
        ax2.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-",
                 label=f"{c} (ECE {rel['ece']:.3f})")
    ax2.plot([0, 1], [0, 1], color="grey", lw=0.8)
    ax2.set(xlabel="predicted probability", ylabel="fraction of windows of that class",
            xlim=(0, 1), ylim=(0, 1), title="per class, after calibration")
    ax2.legend()
    return _save(fig, path)


def plot_sweep(sweep: dict[str, Any], key: str, path: Path) -> Path:
    """Event F1 and false alarms per hour against each class's threshold (validation)."""
    from training.plots import _figure, _save

    rows = sweep[key]["per_class"]
    fig = _figure(10, 4.5)
    ax, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for c, points in rows.items():
        t = [p["threshold"] for p in points]
        ax.plot(t, [p["event_f1"] for p in points], "o-", label=c)
        ax2.plot(t, [p["false_alarms_per_hour"] for p in points], "o-", label=c)
        chosen = sweep[key]["thresholds"][c]
        ax.axvline(chosen, ls=":", color=ax.lines[-1].get_color())
    ax.set(xlabel="threshold", ylabel="event F1", title="validation soundscapes")
    ax2.set(xlabel="threshold", ylabel="false alarms per hour", yscale="symlog")
    ax.legend()
    ax2.legend()
    return _save(fig, path)


def _sound_rows(m: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for c, v in m["per_class"].items():
        rows.append([c, v["event_f1"], v["event_precision"], v["event_recall"], v["segment_f1"],
                     v["file_flag"]["f1"], v["false_alarms_per_hour"], v["reference_events"],
                     v["estimated_events"]])
    rows.append(["**mean / total**", m["mean_event_f1"], None, None, None,
                 m["mean_file_flag_f1"], m["false_alarms_per_hour"], None, None])
    return rows


def _snr_rows(m: dict[str, Any]) -> list[list[Any]]:
    return [[c, b["snr_db"], b["events"], b["found"], b["recall"]]
            for c, v in m["per_class"].items() for b in v.get("found_by_snr", [])]


def _snr_text(m: dict[str, Any]) -> list[str]:
    """The test soundscapes' events found, by mixing SNR (none when the events carry none)."""
    rows = _snr_rows(m)
    if not rows:
        return []
    return ["By SNR (the event's level over the bed under it): how many reference events "
            "an event of the class overlaps at all, boundaries not judged. A class whose "
            "events are found but not matched loses on boundaries; one whose events are not "
            "found loses on the head or its thresholds.", "",
            *_table(["class", "SNR", "reference events", "found", "found share"], rows), ""]


_SOUND_HEADER = ["class", "event F1", "precision", "recall", "segment F1 (1 s)", "file-flag F1",
                 "false alarms / h", "reference events", "detected events"]


FALSE_ALARM_ROWS = 5


def _false_alarm_text(metrics: dict[str, Any]) -> list[str]:
    """The background clips under most false alarms, per soundscape set and class."""
    from training.false_alarms import sources_table

    sources = metrics.get("false_alarm_sources") or {}
    out: list[str] = []
    for split, title in (("test", "test"), ("val", "validation")):
        by_class = sources.get(split) or {}
        if not any(by_class.values()):
            continue
        total = {c: sum(r["false_alarms"] for r in rows) for c, rows in by_class.items()}
        out += [f"False alarms on the {title} soundscapes by the background clip under each "
                f"({', '.join(f'{c} {n}' for c, n in total.items())}; the "
                f"{FALSE_ALARM_ROWS} clips with most per class; all in `metrics.json`, "
                "`false_alarm_sources`). A clip that recurs is a sound the head takes for "
                "an event: more clips like it make good hard negatives.", "",
                *sources_table(by_class, FALSE_ALARM_ROWS), ""]
    return out


def _fraction_text(metrics: dict[str, Any]) -> str:
    """The minimum event fraction and the validation clips' figures it was chosen on."""
    chosen = metrics.get("min_event_fraction")
    if not chosen:
        return ""
    figures = ", ".join(f"{k}: {v:.3f}" for k, v in chosen["val_clips_macro_f1"].items())
    return (f" (in a short recording, at most {chosen['chosen']:g} of its length: chosen on the "
            f"validation clips, macro-F1 by fraction {figures})")


def _short_text(metrics: dict[str, Any]) -> list[str]:
    """How short recordings are judged: their thresholds and the validation figures."""
    short = metrics.get("short_recordings")
    if not short:
        return []
    if not short["thresholds"]:
        return [f"A recording of at most {short['max_s']:g} s uses the same thresholds as a "
                "long one: no other threshold raised the validation clips' macro-F1 "
                f"({short['val_clips_macro_f1']:.3f}).", ""]
    chosen = ", ".join(f"{c} {t:g}" for c, t in short["thresholds"].items())
    return [f"A recording of at most {short['max_s']:g} s (a clip) uses its own thresholds: "
            f"{chosen}, chosen on the validation clips (macro-F1 "
            f"{short['val_clips_macro_f1']:.3f}, against "
            f"{short['val_clips_macro_f1_long_thresholds']:.3f} with the soundscapes' "
            "thresholds). A clip has little background to make a false alarm in, so the "
            "soundscapes' false-alarm budget does not set its thresholds.", ""]


def _recipes_text(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    out = ["## Recipes tried", "",
           "Same split, patches and soundscapes for every row; thresholds chosen on the "
           "validation soundscapes for each recipe (so the validation columns are the "
           "tuned figures the recipes were compared by), test soundscapes never looked at "
           "for a choice.", ""]
    out += _table(["recipe", "val mean event F1", "val file-flag F1", "val FA/h",
                   "test mean event F1", "test file-flag F1", "test FA/h", "test clips macro-F1"],
                  [[r["recipe"], r["val"]["mean_event_f1"], r["val"]["mean_file_flag_f1"],
                    r["val"]["false_alarms_per_hour"], r["test"]["mean_event_f1"],
                    r["test"]["mean_file_flag_f1"], r["test"]["false_alarms_per_hour"],
                    r.get("test_clip_macro_f1")] for r in rows])
    return [*out, ""]


def render_detect_report(*, config: DetectConfig, metrics: dict[str, Any],
                         plots: dict[str, Path]) -> str:
    sc = metrics["soundscapes"]
    test = sc["test"]
    clips = metrics["clips"]
    det = metrics["detection"]
    data = metrics["data"]
    recipe = metrics["recipe"]
    arch = (f"temporal convolution (kernel {config.kernel}, dilations "
            f"{', '.join(map(str, config.dilations))})" if config.arch == "temporal"
            else f"context MLP (scales {', '.join(map(str, config.scales))} patches)")
    lines = [
        f"# Detection head `{Path(config.out_dir).name}`: {config.backbone} + {arch}", "",
        f"On {test['files']} held-out test soundscapes ({test['hours']:.1f} h, clips from "
        f"recording groups never used in training or validation): mean event F1 "
        f"**{test['mean_event_f1']:.3f}** over "
        + ", ".join(metrics["thresholds"]) + f", file-flag F1 **{test['mean_file_flag_f1']:.3f}**,"
        f" **{test['false_alarms_per_hour']:.1f}** false alarms per hour of background. On "
        f"{clips['test_events']['n']} held-out test clips, the scan's file verdict has "
        f"macro-F1 **{clips['test_events']['macro_f1']:.3f}** "
        f"(**{clips['test_events_bandlimited']['macro_f1']:.3f}** band-limited to 4 kHz).", "",
        *[f"> **Warning:** {w}." for w in metrics.get("warnings", [])],
        "Reproduce:", "", "```", config.command(), "```", "",
        "## Test soundscapes", "",
        f"Thresholds and detection settings chosen on validation soundscapes (below). "
        f"Windows {det['window_s']} s at {det['hop_s']} s, smoothed over "
        f"{det['smooth_windows']}, gaps up to {det.get('max_gap_s', 0.0)} s bridged, events "
        f"shorter than {det['min_event_s']} s dropped{_fraction_text(metrics)}. Event "
        f"F1: onset collar 1 s, offset collar max(1 s, 20 % of the event), via sed_eval. A "
        f"false alarm is a detected event that touches no reference event, per hour of audio "
        f"no reference event covers ({test['background_hours']:.2f} h here).", "",
        *_table(["threshold", *metrics["thresholds"]],
                [["chosen", *metrics["thresholds"].values()]]), "",
        *_table(_SOUND_HEADER, _sound_rows(test)), "",
        *_snr_text(test),
        *_false_alarm_text(metrics),
        "With every threshold at 0.5 and a 1 s minimum event (the scan's old defaults):", "",
        *_table(_SOUND_HEADER, _sound_rows(sc["test_default_thresholds"])), "",
        "## Validation soundscapes (where the thresholds were chosen)", "",
        *_table(_SOUND_HEADER, _sound_rows(sc["val"])), "",
    ]
    gap = det.get("max_gap_s", 0.0)
    own = {c: sweep_key(det.get("class_min_event_s", {}).get(c, det["min_event_s"]), gap)
           for c in metrics["thresholds"]}
    sweep = metrics["sweep"]
    lines += ["### Threshold sweep (validation, each class at its chosen settings)", "",
              f"Each class's threshold is the best event F1 whose false alarms stay within "
              f"{config.fa_budget_per_hour / max(len(metrics['thresholds']), 1):.1f} per hour "
              f"(its share of the {config.fa_budget_per_hour} budget), the other class at its "
              f"choice; its minimum event length the shortest within 0.02 of its best F1.", ""]
    for c, key in own.items():
        points = sweep[key]["per_class"][c]
        lines += [f"**{c}** ({key})", "", *_table(
            ["threshold", "event F1", "precision", "recall", "segment F1", "file-flag F1",
             "false alarms / h"],
            [[p["threshold"], p["event_f1"], p["event_precision"], p["event_recall"],
              p["segment_f1"], p["file_flag_f1"], p["false_alarms_per_hour"]] for p in points]),
            ""]
        edges = sweep[key].get("edges", {}).get(c)
        if edges:
            chosen = det.get("edge_thresholds", {}).get(c)
            lines += [f"Edge threshold of **{c}** (hysteresis: a kept event extends while the "
                      f"probability stays above it; the lowest within 0.02 of the best F1): "
                      f"**{'none' if chosen is None else chosen}**", "", *_table(
                          ["edge", "event F1", "precision", "recall", "false alarms / h"],
                          [["none" if p["edge"] is None else p["edge"], p["event_f1"],
                            p["event_precision"], p["event_recall"],
                            p["false_alarms_per_hour"]] for p in edges]), ""]
    lines += ["Per minimum event length and gap bridged:", "", *_table(
        ["settings", "thresholds", "mean event F1", "false alarms / h"],
        [[k, ", ".join(f"{c} {t:.2f}" for c, t in v["thresholds"].items()),
          v["mean_event_f1"], v["false_alarms_per_hour"]] for k, v in sweep.items()]), ""]
    if "sweep" in plots:
        lines += [f"![threshold sweep]({plots['sweep'].name})", ""]
    lines += _recipes_text(metrics.get("recipes") or [])
    if metrics.get("cost"):
        c = metrics["cost"]
        lines += ["## Scan-time cost", "",
                  f"`predict_windows` on one hour of YAMNet patches ({c['windows']} windows): "
                  f"**{c['ms_per_hour']:.0f} ms per hour of audio** for this head, "
                  f"{c['baseline_ms_per_hour']:.0f} ms for `{c['baseline']}` in the same run "
                  f"(ratio {c['ms_per_hour'] / c['baseline_ms_per_hour']:.1f}), measured on a shared, "
                  f"loaded CPU (compare the ratio, not the figures).", ""]
    lines += ["## Clips", "",
              "Short held-out clips labelled as the scan labels a file: the class of its "
              "strongest event, else not_screaming. The band-limited rows low-pass every test "
              "clip the way an 8 kHz recording is, so a head that tells classes apart by "
              "bandwidth fails there.", "", *_short_text(metrics),
              *_table(["set", "accuracy", "macro-F1", *[f"F1 {c}" for c in metrics["classes"]],
                       "clips"],
                      [[_CLIP_TITLES.get(k, k), v["accuracy"], v["macro_f1"],
                        *[v["per_class"][c]["f1"] for c in metrics["classes"]], v["n"]]
                       for k, v in clips.items()]), ""]
    cm = clips["test_events"]
    lines += ["Confusion (test clips, from events; rows true, columns predicted):", "",
              *_table(["true \\ predicted", *cm["classes"]],
                      [[f"**{cm['classes'][i]}**", *row]
                       for i, row in enumerate(cm["confusion_matrix"])]), ""]
    cal = metrics["calibration"]
    lines += ["## Calibration", "",
              f"Temperature scaling on {cal['after']['n']} validation windows (clips and "
              f"soundscapes): T = {cal['temperature']:.3f}; expected calibration error (top "
              f"label, {len(cal['after']['bins'])} bins) {cal['before']['ece']:.3f} before, "
              f"**{cal['after']['ece']:.3f}** after.", ""]
    if "reliability" in plots:
        lines += [f"![reliability]({plots['reliability'].name})", ""]
    lines += _table(["confidence bin", "windows", "mean confidence", "accuracy"],
                    [[f"{b['lo']:.1f}-{b['hi']:.1f}", b["n"], b["confidence"], b["accuracy"]]
                     for b in cal["after"]["bins"]]) + [""]
    lines += ["## Training", "",
              f"Windows of {data['files']} labelled clips in {data['groups']} recording groups "
              f"(split by group into train/val/test, `split.csv`), "
              f"{data['train_scene_hours']:.1f} h of training soundscapes mixed from training "
              f"clips only (each through a random channel: as mixed, band-limited to 4 kHz, "
              f"8 kHz mu-law, MP3 32 kb/s; gain -12 to +6 dB), and "
              f"{data['weak_bags']} weak bags. Validation ({data['val_hours']:.1f} h) and test "
              f"({data['test_hours']:.1f} h) soundscapes come from the project benchmark's "
              f"generator (`training.soundscapes`, recordings of "
              f"{data['eval_minutes'][0]:g}-{data['eval_minutes'][1]:g} min, a fifth "
              f"background only), each from its own split's clips; the test set is the "
              f"benchmark's (`benchmarks/soundscapes.py build --split test --hours 2`).", "",
              f"- first fit: best epoch {recipe.get('round1_best_epoch')}",
              f"- hard negatives (background windows the first fit called an event, weighted "
              f"x{config.hard_negative_weight}): {recipe.get('hard_negatives', 'not mined')}",
              f"- weak bags used by instance selection: {recipe.get('weak_bags_used', 0)} of "
              f"{recipe.get('weak_bags', 0)} ({recipe.get('weak_windows_selected', 0)} windows)",
              f"- final fit: kept epoch {recipe['best_epoch']} of {recipe['epochs_run']}; class "
              f"weights ({config.class_weight}) "
              + ", ".join(f"{c} {w:.2f}" for c, w in zip(metrics["classes"],
                                                        recipe["class_weights"], strict=True)),
              ""]
    lines += ["## Split", "", *_table(
        ["split", "files", "groups", *metrics["classes"]],
        [[k, v["files"], v["groups"], *[v["per_label"][c] for c in metrics["classes"]]]
         for k, v in metrics["split"].items()]), ""]
    lines += ["## Configuration", "", "| option | value |", "|---|---|"]
    lines += [f"| {k} | `{_fmt(v)}` |" for k, v in config.to_dict().items()]
    return "\n".join(lines) + "\n"


def write_detect_report(out_dir: str | Path, *, config: DetectConfig,
                        metrics: dict[str, Any]) -> Path:
    out = Path(out_dir)
    plots = {"reliability": plot_reliability(metrics["calibration"], out / RELIABILITY_PNG),
             "sweep": plot_sweep(metrics["sweep"],
                                 sweep_key(metrics["detection"]["min_event_s"],
                                           metrics["detection"].get("max_gap_s", 0.0)),
                                 out / SWEEP_PNG)}
    path = out / REPORT_MD
    path.write_text(render_detect_report(config=config, metrics=metrics, plots=plots))
    return path
