"""scanner.evaluate.truth: every reference format, and a one-line error for malformed truth."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanner.errors import ConfigError
from scanner.evaluate.truth import read_truth

RAVEN_HEAD = ("Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\t"
              "High Freq (Hz)\tAnnotation")


def _events(refs):
    return [(r.file, r.label, round(r.onset_s, 6), round(r.offset_s, 6)) for r in refs]


def test_csv(tmp_path: Path) -> None:
    truth = tmp_path / "truth.csv"
    truth.write_text("file,label,onset,offset\nsub/a.flac,cry,1.5,4\nb.wav, screaming ,10,12.25\n")
    assert _events(read_truth(truth)) == [("sub/a.flac", "cry", 1.5, 4.0),
                                          ("b.wav", "screaming", 10.0, 12.25)]


def test_csv_with_only_a_header_has_no_events(tmp_path: Path) -> None:
    truth = tmp_path / "truth.csv"
    truth.write_text("file,label,onset,offset\n")
    assert read_truth(truth) == []


def test_raven_per_file_keeps_one_row_per_selection(tmp_path: Path) -> None:
    table = tmp_path / "night 1.Table.1.selections.txt"
    table.write_text("\n".join([
        RAVEN_HEAD,
        "1\tSpectrogram 1\t1\t3.0\t5.5\t0\t8000\tcry",
        "1\tWaveform 1\t1\t3.0\t5.5\t0\t8000\tcry",  # the same selection in another view
        "2\tSpectrogram 1\t1\t20\t21\t0\t8000\tscreaming",
    ]) + "\n")
    assert _events(read_truth(table)) == [("night 1", "cry", 3.0, 5.5), ("night 1", "screaming", 20.0, 21.0)]


def test_raven_without_selections_has_no_events(tmp_path: Path) -> None:
    table = tmp_path / "quiet.selections.txt"
    table.write_text(RAVEN_HEAD + "\n")
    assert read_truth(table) == []


def test_raven_combined_table_uses_begin_file_and_file_offset(tmp_path: Path) -> None:
    table = tmp_path / "all.txt"
    table.write_text("\n".join([
        RAVEN_HEAD + "\tBegin File\tFile Offset (s)",
        # a file sequence: begin times run over both files, File Offset is in the file
        "1\tSpectrogram 1\t1\t5\t7\t0\t8000\tcry\ta.wav\t5",
        "2\tSpectrogram 1\t1\t605\t610\t0\t8000\tscreaming\tb.wav\t5",
    ]) + "\n")
    assert _events(read_truth(table)) == [("a.wav", "cry", 5.0, 7.0), ("b.wav", "screaming", 5.0, 10.0)]


def test_raven_begin_path_from_another_machine(tmp_path: Path) -> None:
    table = tmp_path / "all.txt"
    table.write_text("Selection\tBegin Time (s)\tEnd Time (s)\tLabel\tBegin Path\n"
                     "1\t1\t2\tcry\tC:\\rec\\night\\a.wav\n")
    assert _events(read_truth(table)) == [("C:/rec/night/a.wav", "cry", 1.0, 2.0)]


def test_audacity_skips_frequency_lines_and_reads_empty_tracks(tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    (labels / "sub").mkdir(parents=True)
    (labels / "a.txt").write_text("1.000000\t2.500000\tcry\n\\\t100.0\t3000.0\n4\t6\tscreaming\n")
    (labels / "empty.txt").write_text("")
    (labels / "sub" / "c.txt").write_text("0.5\t1.5\tcry\n")
    assert _events(read_truth(labels)) == [("a", "cry", 1.0, 2.5), ("a", "screaming", 4.0, 6.0),
                                           ("sub/c", "cry", 0.5, 1.5)]


def test_folder_mixes_formats(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("1\t2\tcry\n")
    (tmp_path / "b.selections.txt").write_text(RAVEN_HEAD + "\n1\tSpectrogram 1\t1\t3\t4\t0\t1\tcry\n")
    (tmp_path / "truth.csv").write_text("file,label,onset,offset\nc.wav,cry,5,6\n")
    assert sorted(r.file for r in read_truth(tmp_path)) == ["a", "b", "c.wav"]


@pytest.mark.parametrize(("name", "text", "message"), [
    ("t.csv", "file,label,start\na.wav,cry,1\n", "missing onset, offset"),
    ("t.csv", "file,label,onset,offset\na.wav,cry,one,2\n", "t.csv:2: onset 'one' is not a number"),
    ("t.csv", "file,label,onset,offset\na.wav,cry,3,2\n", "t.csv:2: onset 3 s and offset 2 s"),
    ("t.csv", "file,label,onset,offset\na.wav,cry,-1,2\n", "need 0 <= onset < offset"),
    ("t.csv", "file,label,onset,offset\na.wav,,1,2\n", "t.csv:2: no label"),
    ("t.csv", "file,label,onset,offset\n,cry,1,2\n", "t.csv:2: no file named"),
    ("t.csv", "file,label,onset,offset\na.wav,cry,nan,2\n", "not a number"),
    ("a.txt", "1\t2\n", "a.txt:1: an Audacity label line is start<TAB>end<TAB>label"),
    ("a.txt", "1\tx\tcry\n", "a.txt:1: end 'x' is not a number"),
    ("r.selections.txt", "Selection\tBegin Time (s)\tEnd Time (s)\n1\t1\t2\n", "without a label column"),
    ("r.selections.txt", "Selection\tBegin Time (s)\tAnnotation\n1\t1\tcry\n", "End Time (s)"),
    ("table.txt", RAVEN_HEAD + "\n1\tS\t1\t1\t2\t0\t1\tcry\n", "Begin Path or Begin File column"),
    ("t.json", "{}", "not a truth file"),
])
def test_malformed_truth_is_a_one_line_config_error(tmp_path: Path, name: str, text: str,
                                                    message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        read_truth(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_and_empty_truth(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_truth(tmp_path / "nope.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no .csv or .txt"):
        read_truth(tmp_path / "empty")
