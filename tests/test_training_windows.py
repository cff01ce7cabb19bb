"""Training windows: the scan's windows, energy-aware positives, MIL instance selection."""

from __future__ import annotations

import numpy as np

from scanner.backbones.fake import FakeBackbone
from scanner.events.segments import window_starts
from scanner.testing import noise, sine
from training.patches import embed_waveforms, patch_energy_db
from training.windows import IGNORE, WindowSet, clip_windows, select_bag_positives, windows_of

SR = 16000


def test_windows_are_the_scans_windows() -> None:
    p = embed_waveforms(FakeBackbone(), [noise(10.0, SR)])[0]
    starts, ends = windows_of(p)
    span = (p.n - 1) * 0.48 + 0.96
    np.testing.assert_allclose(starts, window_starts(span, 1.44, 0.48))
    assert ends[-1] == span


def test_patch_energy_tracks_the_level() -> None:
    x = np.concatenate([np.zeros(SR), sine(440, 2.0, SR, amplitude=0.5)])
    e = patch_energy_db(x, 5, 0.48, 0.96)
    assert e[0] == -100.0
    assert abs(e[-1] - 20 * np.log10(0.5 / np.sqrt(2))) < 0.5


def test_positive_clip_windows_only_where_the_sound_is() -> None:
    x = np.concatenate([np.zeros(3 * SR, np.float32), sine(700, 2.0, SR),
                        np.zeros(3 * SR, np.float32)])
    p = embed_waveforms(FakeBackbone(), [x, noise(4.0, SR)])
    ws = clip_windows(p, [0, 2], background=2, scales=(3, 7))
    cry = ws.y[ws.source == 0]
    assert (cry == 0).any() and (cry == IGNORE).any()
    starts, ends = windows_of(p[0])
    loud = (starts < 5.5) & (ends > 2.5)  # patches reach 0.24 s past a window
    assert (cry[~loud] == IGNORE).all()
    assert (ws.y[ws.source == 1] == 2).all()  # background windows are all background
    assert ws.x.shape[1] == 2 * 16


def test_bag_selection_takes_confident_loud_windows_and_skips_empty_bags() -> None:
    bags = WindowSet(np.zeros((6, 2), np.float32), np.full(6, IGNORE), np.array([0, 0, 0, 1, 1, 1]),
                     np.array([-20, -20, -60, -20, -20, -20], np.float32))
    proba = np.zeros((6, 3), np.float32)
    proba[:, 1] = [0.9, 0.6, 0.95, 0.3, 0.2, 0.1]
    y = select_bag_positives(bags, proba, 1, threshold=0.5, top_k=1)
    assert y.tolist() == [1, IGNORE, IGNORE, IGNORE, IGNORE, IGNORE]  # quiet 0.95 skipped
