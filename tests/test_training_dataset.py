"""Finding labelled files: label folders, manifests, and groups derived from file names."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanner.errors import ConfigError
from scanner.testing import noise, sine, write_audio
from training.dataset import derive_group, load_dataset


@pytest.mark.parametrize(("name", "group"), [
    ("cry/baby7_003.wav", "cry/baby7"),
    ("cry/baby7-4.flac", "cry/baby7"),
    ("cry/rec_2-1.wav", "cry/rec"),
    ("cry/street scene 12.wav", "cry/street scene"),
    ("cry/0001.wav", "cry/0001"),
    ("cry/sub/take.wav", "cry/sub/take"),
    ("x1.wav", "x1"),
])
def test_derive_group(name: str, group: str) -> None:
    root = Path("/data")
    assert derive_group(root / name, root) == group


def _folder(root: Path) -> Path:
    for label, make in (("tone", lambda i: sine(300 + 50 * i, 0.5, 16000)),
                        ("hiss", lambda i: noise(0.5, 16000, seed=i))):
        for rec in range(2):
            for part in range(2):
                write_audio(root / label / f"{label}{rec}_{part}.wav", make(rec * 2 + part), 16000)
    (root / "tone" / "notes.txt").write_text("not audio")
    return root


def test_label_folders(tmp_path: Path) -> None:
    ds = load_dataset(_folder(tmp_path / "data"))
    assert ds.classes == ("hiss", "tone")
    assert ds.counts() == {"hiss": 4, "tone": 4}
    assert ds.source == "folders"
    groups = {ds.relpath(it): it.group for it in ds.items}
    assert groups["tone/tone1_0.wav"] == groups["tone/tone1_1.wav"] == "tone/tone1"
    assert groups["hiss/hiss0_1.wav"] == "hiss/hiss0"
    assert all(it.file.path.is_absolute() and it.file.size_bytes > 0 for it in ds.items)


def test_project_classes_keep_the_project_order(tmp_path: Path) -> None:
    for label in ("screaming", "not_screaming", "cry"):
        write_audio(tmp_path / label / "a.wav", sine(440, 0.2, 16000), 16000)
    assert load_dataset(tmp_path).classes == ("cry", "screaming", "not_screaming")


def test_manifest_with_groups(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data")
    manifest = tmp_path / "labels.csv"
    lines = ["path,label,group"]
    for p in sorted(root.rglob("*.wav")):
        lines.append(f"data/{p.relative_to(root).as_posix()},{p.parent.name}-x,G{p.stem[-3]}")
    manifest.write_text("\n".join(lines) + "\n")
    ds = load_dataset(root, manifest)
    assert ds.classes == ("hiss-x", "tone-x")
    assert ds.root == tmp_path.resolve()
    assert {it.group for it in ds.items} == {"G0", "G1"}
    assert ds.relpath(ds.items[0]).startswith("data/")


def test_manifest_in_data_dir_with_group_column_is_used(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data")
    rows = [f"{p.relative_to(root).as_posix()},{p.parent.name},same"
            for p in sorted(root.rglob("*.wav"))][:6]
    (root / "manifest.csv").write_text("file,label,group\n" + "\n".join(rows) + "\n")
    ds = load_dataset(root)
    assert len(ds.items) == 6 and {it.group for it in ds.items} == {"same"}
    # Without a group column it is ignored and the folders are used.
    (root / "manifest.csv").write_text("file,label\n" + "\n".join(r.rsplit(",", 1)[0]
                                                                  for r in rows) + "\n")
    assert load_dataset(root).source == "folders"


def test_errors(tmp_path: Path) -> None:
    write_audio(tmp_path / "only" / "a.wav", sine(440, 0.2, 16000), 16000)
    with pytest.raises(ConfigError, match="two labels"):
        load_dataset(tmp_path)
    bad = tmp_path / "m.csv"
    bad.write_text("name,label\nx.wav,a\n")
    with pytest.raises(ConfigError, match="'path'"):
        load_dataset(tmp_path, bad)
    bad.write_text("path,label\nmissing.wav,a\nonly/a.wav,b\n")
    with pytest.raises(ConfigError, match="do not exist"):
        load_dataset(tmp_path, bad)


def test_site_folders_are_refused_before_any_audio_is_read(tmp_path) -> None:
    from training.dataset import load_dataset, looks_like_sites

    for site in ("site_01", "site_02", "site_03"):
        (tmp_path / site).mkdir()
        (tmp_path / site / "20240517_120000.wav").write_bytes(b"not audio at all")
    with pytest.raises(ConfigError, match="look like recording sites"):
        load_dataset(tmp_path)
    assert looks_like_sites(["AM12", "AM13"]) and looks_like_sites(["20240517", "20240518"])
    assert not looks_like_sites(["cry", "screaming", "not_screaming"])
    assert not looks_like_sites(["dog_bark", "rain"])
