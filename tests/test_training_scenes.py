"""In-memory soundscapes: events at the asked SNR, no overlaps, window labels from event times."""

from __future__ import annotations

import numpy as np

from scanner.testing import chirp, noise, sine
from training.scenes import SAMPLE_RATE_HZ, active_span, make_scene, rms_db, window_labels

SR = SAMPLE_RATE_HZ
CLASSES = ("cry", "screaming", "not_screaming")


def _pools():
    background = [noise(3.0, SR, amplitude=0.1, seed=i) for i in range(4)]
    cries = [np.concatenate([np.zeros(SR // 2, np.float32), sine(500 + 50 * i, 2.0, SR),
                             np.zeros(SR // 2, np.float32)]) for i in range(3)]
    screams = [chirp(800, 3000, 1.5, SR) for _ in range(2)]
    return background, {"cry": cries, "screaming": screams}


def test_active_span_drops_leading_and_trailing_silence() -> None:
    x = np.concatenate([np.zeros(SR), sine(440, 1.0, SR), np.zeros(SR)])
    a, b = active_span(x)
    assert abs(a - SR) <= SR // 10 and abs(b - 2 * SR) <= SR // 10


def test_events_placed_apart_at_the_asked_snr() -> None:
    bg, ev = _pools()
    scene = make_scene(np.random.default_rng(0), duration_s=60, background=bg, events=ev,
                       n_events=6, snr_db=(3.0, 12.0))
    assert len(scene.events) >= 4
    for a, b in zip(scene.events, scene.events[1:], strict=False):
        assert b.onset_s >= a.offset_s + 0.99
    for e in scene.events:
        lo, hi = int(e.onset_s * SR), int(e.offset_s * SR)
        measured = rms_db(scene.event_tracks[e.label][lo:hi]) - rms_db(scene.bed[lo:hi])
        assert abs(measured - e.snr_db) < 0.5 and 3.0 <= e.snr_db <= 12.0
    np.testing.assert_allclose(scene.waveform, scene.bed + sum(scene.event_tracks.values()),
                               atol=1e-5)


def test_same_seed_same_scene() -> None:
    bg, ev = _pools()
    a = make_scene(np.random.default_rng(7), duration_s=30, background=bg, events=ev, n_events=3)
    b = make_scene(np.random.default_rng(7), duration_s=30, background=bg, events=ev, n_events=3)
    np.testing.assert_array_equal(a.waveform, b.waveform)
    assert a.events == b.events


def test_window_labels_follow_event_times() -> None:
    bg, ev = _pools()
    scene = make_scene(np.random.default_rng(1), duration_s=60, background=bg, events=ev,
                       n_events=4, snr_db=(10.0, 15.0))
    starts = np.arange(0, 58.5, 0.48)
    ends = starts + 1.44
    y = window_labels(scene, starts, ends, CLASSES, "not_screaming")
    for k, (s, e) in enumerate(zip(starts, ends, strict=True)):
        inside = [ev_ for ev_ in scene.events if ev_.onset_s <= s and e <= ev_.offset_s]
        apart = all(ev_.offset_s < s - 0.25 or ev_.onset_s > e + 0.25 for ev_ in scene.events)
        if inside:  # loud (10-15 dB over the bed) and covering the whole window
            assert y[k] == CLASSES.index(inside[0].label)
        elif apart:
            assert y[k] == CLASSES.index("not_screaming")
    assert (y == -1).any()  # the edges are left out
