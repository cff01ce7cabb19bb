"""Numbers the whole package shares, each defined once, derived values commented.

Model-specific facts live here rather than in the modules that use them, so decoding, the
backbones, the heads and the tables cannot drift apart.
"""

from __future__ import annotations

SAMPLE_RATE_HZ = 16_000
"""Rate every backbone here reads (YAMNet and Wav2Vec2): decoding resamples to it."""

# -- YAMNet patch geometry (TF Hub google/yamnet/1 and its TFLite conversion) ---------------
YAMNET_STFT_WINDOW_SAMPLES = 400  # 25 ms
YAMNET_STFT_HOP_SAMPLES = 160  # 10 ms
YAMNET_PATCH_FRAMES = 96  # STFT frames per patch: 0.96 s
YAMNET_PATCH_HOP_FRAMES = 48  # 0.48 s
YAMNET_N_MELS = 64  # log-mel bands per frame
YAMNET_PATCH_S = YAMNET_PATCH_FRAMES * YAMNET_STFT_HOP_SAMPLES / SAMPLE_RATE_HZ  # 0.96 s
YAMNET_HOP_S = YAMNET_PATCH_HOP_FRAMES * YAMNET_STFT_HOP_SAMPLES / SAMPLE_RATE_HZ  # 0.48 s
YAMNET_N_SCORES = 521  # AudioSet classes
YAMNET_EMBEDDING_DIM = 1024

# -- Wav2Vec2 (base) -------------------------------------------------------------------------
WAV2VEC2_FRAME_HOP_S = 0.02  # one hidden state per 320 samples
WAV2VEC2_BASE_DIM = 768

# -- scan defaults (ScanConfig's fields use these) ------------------------------------------
DEFAULT_BATCH_S = 60.0  # seconds of audio per model batch while the model is busy
DEFAULT_PART_S = 120.0  # long files are decoded and embedded in parts of this length
DEFAULT_DECODE_TIMEOUT_S = 300.0
