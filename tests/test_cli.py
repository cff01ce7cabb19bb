"""The command line: help, options, exit codes, the summary, scan through CliRunner."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from scanner import __version__
from scanner.cli import EXIT_FILE_ERRORS, EXIT_LOAD_FAILED, EXIT_USAGE, cli
from scanner.cli.options import TEST_BACKBONES_ENV, deprecated_alias
from scanner.cli.scan import SECTIONS, scan
from scanner.testing import sine, write_audio

ROOT = Path(__file__).resolve().parents[1]


def _scan(folder: Path, out: Path, head: Path, *extra: str, before: tuple[str, ...] = ()):
    return CliRunner().invoke(cli, [*before, "scan", str(folder), "-o", str(out), "--backbone",
                                    "fake", "--head", str(head), "--workers", "0", *extra])


def test_help_imports_no_deep_learning_framework():
    code = ("import sys; from scanner.cli import cli\n"
            "try:\n    cli(['--help'])\nexcept SystemExit:\n    pass\n"
            "for cmd in ('scan', 'train'):\n"
            "    try:\n        cli([cmd, '--help'])\n    except SystemExit:\n        pass\n"
            "heavy = [m for m in ('tensorflow', 'torch', 'transformers') if m in sys.modules]\n"
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "scan" in proc.stdout and "train" in proc.stdout


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_scan_summary_counts_labels_and_names_tables_and_next_command(audio_folder, fake_head,
                                                                     tmp_path):
    out = tmp_path / "r.parquet"
    result = _scan(audio_folder, out, fake_head)
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 6
    assert "6 files (6 ok, 0 errors)" in result.output
    counts = {c: sum(r["label"] == c for r in rows) for c in ("cry", "screaming", "not_screaming")}
    assert f"labels: cry {counts['cry']}, screaming {counts['screaming']}, " \
           f"not_screaming {counts['not_screaming']}" in result.output
    assert f"tables: {out}" in result.output
    assert f"next:   scanner report {out} -o {tmp_path / 'r.html'}" in result.output


def test_summary_counts_events_with_segments(audio_folder, fake_head, tmp_path):
    out = tmp_path / "r.parquet"
    result = _scan(audio_folder, out, fake_head, "--segments")
    assert result.exit_code == 0, result.output
    n_events = sum(r["n_events"] for r in pq.read_table(out).to_pylist())
    assert f"events: {n_events}\n" in result.output
    assert str(tmp_path / "r.events.parquet") in result.output


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_before_or_after_the_subcommand_prints_nothing_when_all_is_well(
        audio_folder, fake_head, tmp_path, where):
    out = tmp_path / "r.parquet"
    result = _scan(audio_folder, out, fake_head, *(["-q"] if where == "after" else []),
                   before=("-q",) if where == "before" else ())
    assert result.exit_code == 0, result.output
    assert result.output == ""
    assert pq.read_table(out).num_rows == 6


def test_every_command_takes_verbose_and_quiet():
    for name, command in cli.commands.items():
        names = {p.name for p in command.params}
        assert {"verbose", "quiet"} <= names, name


def test_partial_failure_exits_0_with_a_warning_and_4_with_strict(audio_folder, fake_head,
                                                                   tmp_path):
    (audio_folder / "broken.flac").write_bytes(b"fLaC" + b"\x00" * 20)
    lenient = _scan(audio_folder, tmp_path / "r.csv", fake_head, "-q")
    assert lenient.exit_code == 0, lenient.output
    assert re.search(r"WARNING 1 of 7 files could not be analysed \(\w+ 1\)", lenient.output)
    assert "--strict makes this exit with code 4" in lenient.output
    strict = _scan(audio_folder, tmp_path / "s.csv", fake_head, "--strict")
    assert strict.exit_code == EXIT_FILE_ERRORS, strict.output
    assert "7 files (6 ok, 1 errors)" in strict.output
    assert re.search(r"errors: \w+ 1", strict.output)


def test_output_extension_decides_the_format(audio_folder, fake_head, tmp_path):
    for name in ("results.txt", "results.json", "results"):
        result = _scan(audio_folder, tmp_path / name, fake_head)
        assert result.exit_code == EXIT_USAGE, result.output
        assert "a results table ends in .csv, .parquet, .pq" in result.output
        assert not (tmp_path / name).exists()
    clash = _scan(audio_folder, tmp_path / "r.csv", fake_head, "--format", "parquet")
    assert clash.exit_code == EXIT_USAGE and "contradicts" in clash.output
    upper = _scan(audio_folder, tmp_path / "R.CSV", fake_head, "--format", "CSV")
    assert upper.exit_code == 0, upper.output
    assert (tmp_path / "R.CSV").read_text().startswith("\"path\",")
    pq_out = _scan(audio_folder, tmp_path / "r.pq", fake_head)
    assert pq_out.exit_code == 0 and pq.read_table(tmp_path / "r.pq").num_rows == 6


def test_empty_results_warn_and_say_why(tmp_path, fake_head):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _scan(empty, tmp_path / "a.parquet", fake_head)
    assert result.exit_code == 0, result.output
    assert "no audio files to scan" in result.output and "no files at all" in result.output

    notes = tmp_path / "notes"
    notes.mkdir()
    for i in range(3):
        (notes / f"n{i}.txt").write_text("x")
    result = _scan(notes, tmp_path / "b.parquet", fake_head)
    assert "3 files, none with an audio extension (found .txt 3)" in result.output

    sounds = tmp_path / "sounds"
    write_audio(sounds / "a.wav", sine(440, 0.5, 16000), 16000)
    write_audio(sounds / ".hidden.wav", sine(440, 0.5, 16000), 16000)
    result = _scan(sounds, tmp_path / "c.parquet", fake_head, "--exclude", "a.wav")
    assert "2 audio files, all left out by --exclude a.wav; hidden files" in result.output


def test_missing_model_is_a_clear_message_not_a_traceback(audio_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("SCANNER_MODEL_DIR", str(tmp_path / "no-models"))
    monkeypatch.setenv("SCANNER_OFFLINE", "1")
    result = CliRunner().invoke(cli, ["scan", str(audio_folder), "-o", str(tmp_path / "r.parquet")])
    assert result.exit_code == EXIT_LOAD_FAILED
    assert "Traceback" not in result.output
    assert not (tmp_path / "r.parquet").exists()


def test_usage_errors():
    runner = CliRunner()
    assert runner.invoke(cli, ["scan"]).exit_code == 2
    assert runner.invoke(cli, ["scan", "/definitely/not/here"]).exit_code == 2
    bad = runner.invoke(cli, ["scan", ".", "--backbone", "nope"])
    assert bad.exit_code == 2 and "unknown backbone" in bad.output


def test_test_backbone_is_not_offered_to_users(monkeypatch, audio_folder, fake_head, tmp_path):
    monkeypatch.delenv(TEST_BACKBONES_ENV)
    refused = _scan(audio_folder, tmp_path / "r.parquet", fake_head)
    assert refused.exit_code == 2 and "unknown backbone 'fake'" in refused.output
    assert "fake" not in refused.output.split("choose from")[1]
    env = {k: v for k, v in os.environ.items() if k != TEST_BACKBONES_ENV}
    for command in ("scan", "train"):
        proc = subprocess.run([sys.executable, "-m", "scanner", command, "--help"], cwd=ROOT,
                              env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert "fake" not in proc.stdout, command


def test_head_for_another_backbone_is_refused(audio_folder, fake_head, tmp_path, model_dir,
                                              monkeypatch):
    monkeypatch.setenv("SCANNER_MODEL_DIR", str(model_dir))
    result = CliRunner().invoke(cli, ["scan", str(audio_folder), "-o", str(tmp_path / "r.parquet"),
                                      "--head", str(fake_head)])
    assert result.exit_code == EXIT_LOAD_FAILED
    assert "trained for backbone 'fake'" in result.output


# -- options: renames, help ----------------------------------------------------------------------

def test_old_batch_size_spelling_still_reaches_the_wav2vec2_option():
    runner = CliRunner()
    old = runner.invoke(cli, ["scan", ".", "--backbone", "yamnet", "--batch-size", "4"])
    assert old.exit_code == 2
    assert "--batch-size is deprecated and will be removed; use --w2v-batch-size" in old.output
    assert "--w2v-batch-size only apply to --backbone wav2vec2" in old.output
    both = runner.invoke(cli, ["scan", ".", "--batch-size", "4", "--w2v-batch-size", "4"])
    assert both.exit_code == 2 and "give --w2v-batch-size only" in both.output


def test_train_hidden_sizes_and_its_deprecated_spelling(tmp_path):
    runner = CliRunner()
    for flag in ("--hidden-sizes", "--hidden"):
        result = runner.invoke(cli, ["train", str(tmp_path), "-o", str(tmp_path / "h"), flag,
                                     "abc"])
        assert result.exit_code == 2, result.output
        assert "'abc' is not a layer size" in result.output
        assert ("deprecated" in result.output) == (flag == "--hidden")
    help_text = runner.invoke(cli, ["train", "--help"]).output
    assert "--hidden-sizes" in help_text and "--hidden " not in help_text


def test_deprecated_alias_passes_its_value_and_keeps_the_default():
    @click.command()
    @click.option("--new-name", "value", default=7, type=int)
    @deprecated_alias("--old-name", "value", "--new-name", type=int)
    def command(value: int) -> None:
        click.echo(f"value={value}")

    runner = CliRunner()
    assert runner.invoke(command, []).output.strip() == "value=7"
    assert "value=3" in runner.invoke(command, ["--old-name", "3"]).output
    assert runner.invoke(command, ["--new-name", "5"]).output.strip() == "value=5"
    assert "--old-name" not in runner.invoke(command, ["--help"]).output


def test_scan_help_groups_every_option_and_shows_defaults_one_way():
    text = CliRunner().invoke(cli, ["scan", "--help"], terminal_width=100).output
    positions = [text.index(f"\n{title}:\n") for title, _ in SECTIONS]
    assert positions == sorted(positions)
    grouped = {name for _, names in SECTIONS for name in names}
    options = {p.name for p in scan.params if isinstance(p, click.Option) and not p.hidden}
    assert options - grouped == {"verbose", "quiet"}
    assert grouped <= options
    assert not re.search(r"\((default|Default)[: ]", text) and "Default:" not in text
    flat = " ".join(text.split())
    assert "--w2v-window FLOAT RANGE Wav2Vec2 window length in seconds. [default: 10.0;" in flat
    assert "[default: the head's, else 1.44;" in flat and "[default: results.parquet]" in flat
    assert "--batch-size" not in text.replace("--w2v-batch-size", "")
