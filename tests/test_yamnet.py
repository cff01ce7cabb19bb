"""YAMNet: framing arithmetic, the real TFLite model from ../shared, the SavedModel/TF Hub path
(against a tiny SavedModel built here with YAMNet's call signature), and load errors."""

from __future__ import annotations

import csv
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from scanner.backbones import BACKBONES
from scanner.backbones.yamnet import YAMNetBackbone
from scanner.backbones.yamnet import backbone as yamnet_module
from scanner.backbones.yamnet import runtime as rt
from scanner.backbones.yamnet.frames import (
    GAP_PATCHES,
    MIN_SAMPLES,
    PATCH_HOP_SAMPLES,
    call_input,
    n_patches,
    padded_samples,
    plan_calls,
)
from scanner.backbones.yamnet.split import SplitRunner
from scanner.errors import ConfigError, ModelNotFoundError

SR = 16_000
# Clip lengths that exercise every padding case: empty, under one patch, exactly one,
# one sample over, whole hops (15600 + k * 7680, where TFLite adds a patch), and long.
LENGTHS_S = (0.0, 0.2, 0.96, 0.975, 1.0, 1.44, 3.3, 7.0, 10.0)
LENGTHS = [int(s * SR) for s in LENGTHS_S] + [MIN_SAMPLES + 1, padded_samples(4),
                                              padded_samples(6), padded_samples(17) + 5]
# Packed and one-clip calls feed each patch the same samples. Measured: the TFLite model
# (XNNPACK) agrees exactly (max abs diff 0.0); TensorFlow's oneDNN matmuls take another
# path for a 1-row call, so the tiny model's 1-patch clips differ by float32 rounding
# (max abs diff 2.1e-5 on embeddings up to 20, i.e. 1e-6 relative; 0.0 for longer clips).
RTOL, ATOL = 1e-5, 1e-4


def _noise(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.3 * rng.standard_normal(n) * np.sin(np.arange(n) / 900.0)).astype(np.float32)


def _tone(seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _assert_same(a, b) -> None:
    assert a.n_patches == b.n_patches
    np.testing.assert_allclose(a.embeddings, b.embeddings, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(a.scores, b.scores, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(a.starts_s, b.starts_s)


# --- framing arithmetic (no framework) -------------------------------------------------

def test_n_patches_follows_yamnet_padding() -> None:
    assert [n_patches(n) for n in (0, 400, 15_600, 15_601, 16_000, 23_280, 23_281)] == \
        [1, 1, 1, 2, 2, 2, 3]
    for k in range(1, 50):
        assert n_patches(padded_samples(k)) == k
        assert n_patches(padded_samples(k) + 1) == k + 1


@pytest.mark.parametrize("pack", [False, True])
def test_plan_calls_covers_every_patch_once(pack: bool) -> None:
    lengths = [0, 5_000, 16_000, 80_000, 2_000_000, 16_000, 300_000]
    calls = plan_calls(lengths, max_patches=40, pack=pack)
    seen: dict[int, list[int]] = {i: [] for i in range(len(lengths))}
    for call in calls:
        assert call.patches <= 40
        end = -GAP_PATCHES
        for seg, offset in zip(call.segments, call.offsets, strict=True):
            assert offset >= end + GAP_PATCHES  # no patch straddles two segments
            seen[seg.clip].extend(range(seg.first_patch, seg.first_patch + seg.patches))
            end = offset + seg.patches
        assert end == call.patches
    assert all(seen[i] == list(range(n_patches(n))) for i, n in enumerate(lengths))
    if not pack:
        assert all(len(call.segments) == 1 for call in calls)
    else:
        assert len(calls) < sum(-(-n_patches(n) // 40) for n in lengths)


def test_call_input_places_clips_at_patch_offsets() -> None:
    waves = [np.full(20_000, 1, np.float32), np.full(3_000, 2, np.float32)]
    (call,) = plan_calls([len(w) for w in waves], max_patches=100, pack=True)
    x = call_input(call, waves)
    assert call.offsets == (0, n_patches(20_000) + GAP_PATCHES)
    assert len(x) == padded_samples(call.patches)
    at = call.offsets[1] * PATCH_HOP_SAMPLES
    np.testing.assert_array_equal(x[:20_000], 1)
    np.testing.assert_array_equal(x[20_000:at], 0)
    np.testing.assert_array_equal(x[at:at + 3_000], 2)
    np.testing.assert_array_equal(x[at + 3_000:], 0)


def test_registered_and_light_to_import() -> None:
    assert BACKBONES.get("yamnet") is YAMNetBackbone
    code = ("import sys, scanner.backbones.yamnet; "
            "bad = [m for m in ('tensorflow', 'tensorflow_hub', 'ai_edge_litert') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the real TFLite model -----------------------------------------------------------

@pytest.fixture(scope="module")
def tflite(model_dir: Path) -> YAMNetBackbone:
    """The real model (conftest's ``model_dir`` skips when ../shared is absent)."""
    return YAMNetBackbone.load(str(model_dir / "yamnet" / "yamnet.tflite"), threads=1)


def test_tflite_loads_from_path_and_from_model_dir(tflite: YAMNetBackbone, model_dir: Path,
                                                   monkeypatch) -> None:
    tflite_path = model_dir / "yamnet" / "yamnet.tflite"
    assert tflite.identity["format"] == "tflite"
    assert tflite.identity["source"] == str(tflite_path)
    assert tflite.identity["embedding_dim"] == 1024
    sums = (tflite_path.parent / "SHA256SUMS").read_text()
    assert tflite.identity["sha256"] in sums
    assert tflite.score_names is not None and len(tflite.score_names) == 521
    assert tflite.score_names[0] == "Speech"
    assert tflite.config()["hop_s"] == 0.48 and tflite.config()["window_s"] == 0.96

    monkeypatch.setenv("SCANNER_MODEL_DIR", str(model_dir))
    from_env = YAMNetBackbone.load()
    assert from_env.identity == tflite.identity
    from_folder = YAMNetBackbone.load(str(model_dir), threads=2)  # laid out like the env's
    assert from_folder.identity["source"] == str(tflite_path)
    # Cut at its patch tensor, the model's front end packs clips on any number of threads;
    # whole, packing (2 wasted patches per clip) only pays on more than one thread.
    assert isinstance(tflite._runner, SplitRunner) and tflite.pack and from_folder.pack
    whole = YAMNetBackbone.load(str(model_dir), threads=1, split=False)
    assert not isinstance(whole._runner, SplitRunner) and not whole.pack


def test_tflite_shapes_and_times(tflite: YAMNetBackbone) -> None:
    for n, want in [(0, 1), (15_600, 1), (16_000, 2), (3 * SR, 6)]:
        emb = tflite.embed(_noise(n, 0))
        assert emb.embeddings.shape == (want, 1024) and emb.embeddings.dtype == np.float32
        assert emb.scores is not None and emb.scores.shape == (want, 521)
        np.testing.assert_allclose(emb.starts_s, np.arange(want) * 0.48)
        assert emb.window_s == 0.96


def test_tflite_tells_a_tone_from_noise(tflite: YAMNetBackbone) -> None:
    names = tflite.score_names
    tone = tflite.embed(_tone(3.0)).scores.mean(axis=0)
    noise = tflite.embed(_noise(3 * SR, 1)).scores.mean(axis=0)
    assert names[int(tone.argmax())] != names[int(noise.argmax())]
    tonal = {"Sine wave", "Dial tone", "Telephone", "Busy signal", "Beep, bleep", "Tuning fork"}
    assert names[int(tone.argmax())] in tonal
    assert names[int(noise.argmax())] not in tonal
    white = names.index("White noise")
    assert noise[white] > 5 * tone[white]


def test_tflite_padding_matches_the_models_own(tflite: YAMNetBackbone) -> None:
    """embed() pads to whole patches itself; the model's own padding of the raw clip agrees."""
    runner = tflite._runner
    for n in (1_000, 15_601, 50_000, padded_samples(5)):
        x = _noise(n, n)
        scores, embeddings = runner(x)
        emb = tflite.embed(x)
        # The TFLite model may add one patch at whole-hop lengths (see YAMNetBackbone._run).
        assert emb.n_patches <= len(embeddings) <= emb.n_patches + 1
        np.testing.assert_array_equal(emb.embeddings, embeddings[:emb.n_patches])
        np.testing.assert_array_equal(emb.scores, scores[:emb.n_patches])


def test_tflite_batch_equals_one_by_one(tflite: YAMNetBackbone, model_dir: Path,
                                       monkeypatch) -> None:
    """Many clips in one batch give each clip the patches of one whole-model call on it alone:
    packed into long waveforms for the whole model, and through the cut model (front end on
    packed waveforms, network on the patches gathered from every clip)."""
    waves = [_noise(n, i) for i, n in enumerate(LENGTHS)] + [_tone(2.5)]
    whole = YAMNetBackbone.load(str(model_dir / "yamnet" / "yamnet.tflite"), threads=1,
                                split=False)
    singles = [whole.embed(w) for w in waves]  # the obvious way: one clip, one model call
    assert isinstance(tflite._runner, SplitRunner) and tflite.pack
    for name, batch in [("cut, packed", tflite.embed_batch(waves)),
                        ("cut, one by one", [tflite.embed(w) for w in waves])]:
        assert len(batch) == len(waves), name
        for one, many in zip(singles, batch, strict=True):
            _assert_same(one, many)
    assert not whole.pack  # one-thread whole TFLite does not pack by default; force it
    monkeypatch.setattr(whole, "pack", True)
    for one, many in zip(singles, whole.embed_batch(waves), strict=True):
        _assert_same(one, many)


def test_tflite_long_clip_in_chunks_equals_one_call(tflite: YAMNetBackbone,
                                                    model_dir: Path) -> None:
    x = _noise(180 * SR, 7)  # 3 minutes: the cut model runs it in two groups of calls
    whole_model = YAMNetBackbone.load(str(model_dir / "yamnet" / "yamnet.tflite"), threads=1,
                                      split=False)
    _assert_same(tflite.embed(x), whole_model.embed(x))
    one_call = YAMNetBackbone(tflite._runner, source="x", sha256=None, score_names=None,
                              max_call_s=200.0)
    whole = one_call.embed(x)
    assert whole.n_patches == n_patches(len(x)) == 374
    _assert_same(tflite.embed(x), whole)  # the default: calls of <= 15 s
    at_60s = YAMNetBackbone(tflite._runner, source="x", sha256=None, score_names=None,
                            max_call_s=60.0)
    assert at_60s.max_patches == 123
    _assert_same(at_60s.embed(x), whole)


# --- the SavedModel / TF Hub path, with a tiny model of YAMNet's interface -----------

def _write_class_map(path: Path) -> list[str]:
    names = [f"class {i}" for i in range(521)]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "mid", "display_name"])
        writer.writerows((i, f"/m/{i}", name) for i, name in enumerate(names))
    return names


def _build_tiny_yamnet(folder: Path, class_map: Path) -> None:
    """A SavedModel with TF Hub YAMNet's calling convention and padding, random weights."""
    import tensorflow as tf

    rng = np.random.default_rng(0)

    class TinyYAMNet(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mel = tf.Variable(rng.random((257, 64)).astype(np.float32) / 64)
            self.proj = tf.Variable(rng.standard_normal((12 * 64, 1024)).astype(np.float32) / 30)
            self.head = tf.Variable(rng.standard_normal((1024, 521)).astype(np.float32) / 30)
            self.class_map = tf.saved_model.Asset(str(class_map))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, waveform):
            n = tf.shape(waveform)[0]
            hops = (tf.maximum(0, n - 15600) + 7679) // 7680
            padded = tf.pad(waveform, [[0, 15600 + 7680 * hops - n]])
            frames = tf.signal.frame(padded, 400, 160) * tf.signal.hann_window(400)
            spec = tf.abs(tf.signal.rfft(frames, [512]))
            log_mel = tf.math.log(tf.matmul(spec, self.mel) + 0.001)
            patches = tf.signal.frame(log_mel, 96, 48, axis=0)
            pooled = tf.reshape(tf.reduce_mean(tf.reshape(patches, [-1, 12, 8, 64]), axis=2),
                                [-1, 12 * 64])
            embeddings = tf.nn.relu(tf.matmul(pooled, self.proj))
            scores = tf.sigmoid(tf.matmul(embeddings, self.head))
            return scores, embeddings, log_mel

        @tf.function(input_signature=[])
        def class_map_path(self):
            return self.class_map.asset_path

    tf.saved_model.save(TinyYAMNet(), str(folder))


@pytest.fixture(scope="module")
def tiny_saved_model(tmp_path_factory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("tiny-yamnet")
    names = _write_class_map(root / "classes.csv")
    _build_tiny_yamnet(root / "saved_model", root / "classes.csv")
    return root / "saved_model", names


def test_saved_model_folder(tiny_saved_model, monkeypatch) -> None:
    folder, names = tiny_saved_model
    model = YAMNetBackbone.load(str(folder), device="cpu", threads=1)
    assert model.identity["format"] == "saved_model"
    assert model.identity["sha256"] == rt.file_sha256(folder / "saved_model.pb")
    assert model.score_names == tuple(names)  # from the model's own class_map_path()
    assert model.pack  # TensorFlow calls are packed by default
    emb = model.embed(_noise(3 * SR, 3))
    assert emb.embeddings.shape == (6, 1024) and emb.scores.shape == (6, 521)

    waves = [_noise(n, i) for i, n in enumerate(LENGTHS)]
    for one, many in zip([model.embed(w) for w in waves], model.embed_batch(waves),
                         strict=True):
        _assert_same(one, many)
    x = _noise(130 * SR, 9)
    one_call = YAMNetBackbone(model._runner, source="x", sha256=None, score_names=None,
                              max_call_s=200.0)
    _assert_same(model.embed(x), one_call.embed(x))

    # A SCANNER_MODEL_DIR with yamnet/saved_model/ prefers it.
    root = folder.parent / "models-dir"
    (root / "yamnet").mkdir(parents=True, exist_ok=True)
    if not (root / "yamnet" / "saved_model").exists():
        (root / "yamnet" / "saved_model").symlink_to(folder, target_is_directory=True)
    monkeypatch.setenv("SCANNER_MODEL_DIR", str(root))
    assert YAMNetBackbone.load().identity["format"] == "saved_model"


def test_hub_path_with_a_local_handle(tiny_saved_model, monkeypatch) -> None:
    """No internet here: the default hub handle is pointed at the local SavedModel."""
    with warnings.catch_warnings():  # tensorflow_hub 0.16 imports pkg_resources
        warnings.simplefilter("ignore")
        import tensorflow_hub as hub

    folder, names = tiny_saved_model
    direct = hub.load(str(folder))
    assert [tuple(t.shape) for t in direct(np.zeros(SR, np.float32))] == \
        [(2, 521), (2, 1024), (144, 64)]
    monkeypatch.delenv("SCANNER_MODEL_DIR", raising=False)
    monkeypatch.delenv("SCANNER_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(yamnet_module, "DEFAULT_HUB_HANDLE", str(folder))
    model = YAMNetBackbone.load(device="cpu")
    assert model.identity["format"] == "hub"
    assert model.identity["source"] == str(folder)
    assert model.identity["sha256"] == rt.file_sha256(folder / "saved_model.pb")
    assert model.score_names == tuple(names)
    x = _noise(2 * SR, 4)
    np.testing.assert_array_equal(model.embed(x).embeddings,
                                  np.asarray(direct(x)[1]))


def test_saved_model_class_map_falls_back_to_a_csv(tmp_path: Path) -> None:
    (tmp_path / "sm").mkdir()
    names = _write_class_map(tmp_path / rt.CLASS_MAP_CSV)
    path = rt.saved_model_class_map(object(), tmp_path / "sm")
    assert path == tmp_path / rt.CLASS_MAP_CSV
    assert rt.read_class_map(path) == tuple(names)
    (tmp_path / "short.csv").write_text("index,mid,display_name\n0,/m/0,Speech\n")
    assert rt.read_class_map(tmp_path / "short.csv") is None


def test_cuda_without_a_gpu_is_a_config_error(tiny_saved_model) -> None:
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="cuda"):
        YAMNetBackbone.load(str(tiny_saved_model[0]), device="cuda")


# --- errors ------------------------------------------------------------------------------

def test_embed_batch_of_nothing(tflite: YAMNetBackbone) -> None:
    assert tflite.embed_batch([]) == []
    with pytest.raises(ValueError, match="1-D"):
        tflite.embed(np.zeros((2, 100), np.float32))


def test_nothing_to_load_says_what_was_tried(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SCANNER_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("SCANNER_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as info:
        YAMNetBackbone.load()
    message = str(info.value)
    for part in (str(tmp_path), "yamnet/yamnet.tflite", "SCANNER_MODEL_DIR=", "--model",
                 "SCANNER_OFFLINE"):
        assert part in message


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no such file"):
        YAMNetBackbone.load(str(tmp_path / "missing.tflite"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelNotFoundError, match="not a YAMNet model"):
        YAMNetBackbone.load(str(tmp_path / "notes.txt"))
    (tmp_path / "broken.tflite").write_bytes(b"\0" * 64)
    with pytest.raises(ModelNotFoundError, match="broken.tflite") as info:
        YAMNetBackbone.load(str(tmp_path / "broken.tflite"))
    assert info.value.__cause__ is not None
    with pytest.raises(ConfigError, match="device"):
        YAMNetBackbone.load(str(tmp_path / "broken.tflite"), device="gpu")
    with pytest.raises(ConfigError, match="unknown yamnet options"):
        YAMNetBackbone.load(str(tmp_path / "broken.tflite"), batch=3)


def test_interpreter_copies_give_the_same_embeddings(model_dir: Path) -> None:
    """Several single-threaded interpreter copies (the default on several cores) share out the
    calls of a batch and return them in order, equal to one interpreter's."""
    one = YAMNetBackbone.load(str(model_dir), threads=1, replicas=1, pack=True)
    two = YAMNetBackbone.load(str(model_dir), threads=2, replicas=2, pack=True, max_call_s=3)
    assert two._replicas.size == 2 and one._replicas is None
    assert (one.concurrent_batches, two.concurrent_batches) == (1, 2)
    waves = [_noise(int(16000 * s), seed=i) for i, s in enumerate((0.3, 1.0, 2.5, 7.0, 4.2, 12.0))]
    expected = one.embed_batch(waves)
    for a, b in zip(expected, two.embed_batch(waves), strict=True):
        _assert_same(a, b)
    # Batches submitted at once from several threads share the copies' queue: each still
    # gets its own clips' patches, in order.
    from concurrent.futures import ThreadPoolExecutor

    batches = [waves[k:] + waves[:k] for k in range(4)]
    with ThreadPoolExecutor(4) as threads:
        results = list(threads.map(two.embed_batch, batches))
    for k, result in enumerate(results):
        for a, b in zip(expected[k:] + expected[:k], result, strict=True):
            _assert_same(a, b)
    with pytest.raises(ConfigError, match="replicas"):
        YAMNetBackbone.load(str(model_dir), replicas=0)


def test_the_cut_model_is_checked_against_the_whole_one(model_dir: Path, monkeypatch,
                                                        caplog) -> None:
    """A model that cannot be cut, or whose halves disagree with it, runs whole."""
    from scanner.backbones.yamnet import split as yamnet_split

    assert yamnet_split.split_yamnet(b"not a TFLite model") is None
    real = yamnet_split.SplitRunner.__call__

    def off_by_a_bit(self, waveform):
        scores, embeddings = real(self, waveform)
        return scores, embeddings + 0.01

    monkeypatch.setattr(yamnet_split.SplitRunner, "__call__", off_by_a_bit)
    with caplog.at_level("WARNING"):
        backbone = YAMNetBackbone.load(str(model_dir / "yamnet" / "yamnet.tflite"), threads=1)
    assert not isinstance(backbone._runner, SplitRunner)
    assert "does not match the whole model" in caplog.text
    assert backbone.embed(_noise(3 * SR, 1)).n_patches == 6
