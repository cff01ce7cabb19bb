"""YAMNet's framing arithmetic, and how many clips (or parts of a long one) share one model call.

YAMNet (TF Hub ``google/yamnet/1`` and its TFLite conversion) zero-pads a waveform to
``MIN_SAMPLES + k * PATCH_HOP_SAMPLES`` samples, takes a 25 ms / 10 ms STFT (no centring,
so 400 samples give 1 frame), and cuts the log-mel frames into 96-frame patches at a
48-frame hop. Patch ``j`` therefore reads exactly the samples
``[j * PATCH_HOP_SAMPLES, j * PATCH_HOP_SAMPLES + MIN_SAMPLES)`` of the padded waveform,
and the network scores each patch on its own. So a patch comes out the same whether the
model sees it alone, in a long call, or in a stream of several clips, as long as its
samples (the clip's own, then zeros) are the same: that is what the planner below keeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from scanner.constants import YAMNET_PATCH_FRAMES as PATCH_FRAMES
from scanner.constants import YAMNET_PATCH_HOP_FRAMES as PATCH_HOP_FRAMES
from scanner.constants import YAMNET_STFT_HOP_SAMPLES as STFT_HOP_SAMPLES
from scanner.constants import YAMNET_STFT_WINDOW_SAMPLES as STFT_WINDOW_SAMPLES

PATCH_HOP_SAMPLES = PATCH_HOP_FRAMES * STFT_HOP_SAMPLES  # 7680
# Samples one patch reads: 96 frames, the last one ending 400 samples after its start.
MIN_SAMPLES = (PATCH_FRAMES - 1) * STFT_HOP_SAMPLES + STFT_WINDOW_SAMPLES  # 15600 = 0.975 s
# A patch-aligned clip followed by another must leave this many whole hops of its slot
# unused: its last patch reads 240 samples past 2 hops (15600 = 2 * 7680 + 240).
GAP_PATCHES = -(-MIN_SAMPLES // PATCH_HOP_SAMPLES) - 1  # 2


def n_patches(n_samples: int) -> int:
    """Patches YAMNet returns for ``n_samples`` of audio (at least 1, even for none)."""
    extra = max(0, n_samples - MIN_SAMPLES)
    return 1 + -(-extra // PATCH_HOP_SAMPLES)


def padded_samples(patches: int) -> int:
    """Samples the model reads to make ``patches`` patches (YAMNet pads to this with zeros)."""
    return MIN_SAMPLES + PATCH_HOP_SAMPLES * (patches - 1)


@dataclass(frozen=True)
class Segment:
    """Patches ``[first_patch, first_patch + patches)`` of waveform number ``clip``."""

    clip: int
    first_patch: int
    patches: int


@dataclass(frozen=True)
class Call:
    """One model call: segments laid out at patch-aligned offsets in one waveform.

    Attributes:
        segments: What the call computes, in order.
        offsets: Index of each segment's first patch in the call's output.
        patches: Rows the model returns for the call (segments, plus the unused
            patches between them that straddle two segments).
    """

    segments: tuple[Segment, ...]
    offsets: tuple[int, ...]
    patches: int

    @property
    def n_samples(self) -> int:
        return padded_samples(self.patches)


def plan_calls(lengths: Sequence[int], *, max_patches: int, pack: bool) -> list[Call]:
    """Splits waveforms of ``lengths`` samples into segments of at most ``max_patches``
    patches, then groups them into model calls.

    Args:
        lengths: Samples of each waveform, in order.
        max_patches: Most rows one call may return (bounds memory and call length).
        pack: Put several segments in one call (each costs ``GAP_PATCHES`` wasted rows);
            False gives one call per segment.

    Returns:
        Calls in order; every waveform's segments appear in order, none is split twice.
    """
    if max_patches < 1:
        raise ValueError(f"max_patches must be >= 1, got {max_patches}")
    segments = [
        Segment(clip, first, min(max_patches, total - first))
        for clip, total in enumerate(n_patches(n) for n in lengths)
        for first in range(0, total, max_patches)
    ]
    calls: list[Call] = []
    group: list[Segment] = []
    offsets: list[int] = []
    end = 0  # rows used by the group so far
    for seg in segments:
        offset = end + GAP_PATCHES if group else 0
        if group and (not pack or offset + seg.patches > max_patches):
            calls.append(Call(tuple(group), tuple(offsets), end))
            group, offsets, offset = [], [], 0
        group.append(seg)
        offsets.append(offset)
        end = offset + seg.patches
    if group:
        calls.append(Call(tuple(group), tuple(offsets), end))
    return calls


def call_input(call: Call, waveforms: Sequence[NDArray[np.float32]]) -> NDArray[np.float32]:
    """The waveform a call feeds the model: each segment's samples at its offset, zeros elsewhere.

    A segment gets exactly the samples its patches read in a one-clip call: the clip's
    own, cut at the segment's last patch, then zeros past the clip's end.
    """
    x = np.zeros(call.n_samples, dtype=np.float32)
    for seg, offset in zip(call.segments, call.offsets, strict=True):
        start = seg.first_patch * PATCH_HOP_SAMPLES
        part = waveforms[seg.clip][start:start + padded_samples(seg.patches)]
        at = offset * PATCH_HOP_SAMPLES
        x[at:at + len(part)] = part
    return x
