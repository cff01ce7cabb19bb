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


def _peak_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum)) * SR / len(x)


def test_varispeed_moves_pitch_and_length_together() -> None:
    from training.scenes import varispeed

    tone = sine(500.0, 2.0, SR)
    up, down = varispeed(tone, 12.0), varispeed(tone, -3.0)
    assert abs(len(up) - SR) <= 2 and abs(_peak_hz(up) - 1000.0) < 5.0
    rate = 2.0 ** (-3.0 / 12.0)
    assert abs(len(down) - 2 * SR / rate) <= 2 and abs(_peak_hz(down) - 500.0 * rate) < 5.0
    assert varispeed(tone, 0.0) is tone


def test_scene_events_played_at_another_speed_keep_their_labels_and_snr() -> None:
    bg, ev = _pools()
    plain = make_scene(np.random.default_rng(3), duration_s=90, background=bg, events=ev,
                       n_events=6)
    fast = make_scene(np.random.default_rng(3), duration_s=90, background=bg, events=ev,
                      n_events=6, speed_semitones=4.0)
    again = make_scene(np.random.default_rng(3), duration_s=90, background=bg, events=ev,
                       n_events=6, speed_semitones=4.0)
    np.testing.assert_array_equal(fast.waveform, again.waveform)
    # every cry is a 2 s tone of 500-600 Hz: played faster or slower, its length and pitch
    # move by the same factor (within 4 semitones), and the labels follow the new length
    lengths = [e.offset_s - e.onset_s for e in fast.events if e.label == "cry"]
    assert lengths and all(2.0 * 2 ** (-4 / 12) - 0.15 <= d <= 2.0 * 2 ** (4 / 12) + 0.15
                           for d in lengths)
    assert {round(d, 1) for d in lengths} != {2.0}
    for e in fast.events:
        lo, hi = int(e.onset_s * SR), int(e.offset_s * SR)
        measured = rms_db(fast.event_tracks[e.label][lo:hi]) - rms_db(fast.bed[lo:hi])
        assert abs(measured - e.snr_db) < 0.5
    # without the option the scene is the one made before it existed
    np.testing.assert_array_equal(
        plain.waveform, make_scene(np.random.default_rng(3), duration_s=90, background=bg,
                                   events=ev, n_events=6, speed_semitones=0.0).waveform)


def test_scene_cache_key_changes_with_the_speed_only_when_it_is_used() -> None:
    from dataclasses import asdict

    from training.scene_sets import SceneSpec, _key

    plain = SceneSpec(10, 120.0, 2.0, 0.2, True, 0)
    blob = {k: v for k, v in asdict(plain).items() if k != "speed_semitones"}
    import hashlib
    import json

    before = hashlib.blake2b(json.dumps({"spec": blob, "split": "train", "clips": {},
                                         "version": 1}, sort_keys=True).encode(),
                             digest_size=10).hexdigest()
    assert _key(plain, "train", {}) == before  # caches made before the option stay valid
    fast = SceneSpec(10, 120.0, 2.0, 0.2, True, 0, speed_semitones=3.0)
    assert _key(fast, "train", {}) != before
