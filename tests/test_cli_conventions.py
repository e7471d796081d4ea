"""The command line follows the conventions: data on stdout, messages and progress on stderr (plain
lines without a terminal), subcommands listed, ``grade help``, every positional argument explained."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from clips import make_clip, scene_frame

import grade
from grade import cli
from grade.cli import main


def test_shots_table_goes_to_stdout(capsys, tmp_path: Path) -> None:
    src = make_clip(tmp_path / "cut.mp4", frames=40, cut_at=20, audio=False)
    assert main(["shots", str(src)]) == 0
    out, err = capsys.readouterr()
    assert "key frame" in out and "2 shots" in out
    assert "key frame" not in err


def test_presets_list_and_show_print_data_to_stdout(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GRADE_PRESETS", str(tmp_path / "lib"))
    frame = scene_frame(64, 48, 0, 0)
    look = grade.fit_look([frame], np.full((8, 8, 3), (200, 100, 50), np.uint8), mode="fast")
    look.preset.manifest.notes = "for the night scenes"
    look.save(tmp_path / "lib" / "dusk.gpreset")
    assert main(["presets", "list"]) == 0
    out, err = capsys.readouterr()
    assert "dusk" in out and "for the night scenes" in out and "dusk" not in err
    assert main(["presets", "show", "dusk"]) == 0
    out, _ = capsys.readouterr()
    assert "mode" in out and "fast" in out and "{'" not in out  # a table, not a Python dict


def test_help_command_and_top_level_usage(capsys) -> None:
    assert main(["help"]) == 0
    out = capsys.readouterr().out
    assert "shots" in out and "conform" in out and "presets" in out and "help [COMMAND]" in out
    assert main(["help", "conform"]) == 0
    assert "--media" in capsys.readouterr().out
    assert main(["help", "nope"]) == 2
    assert "no command 'nope'" in capsys.readouterr().err


def test_without_a_terminal_progress_is_plain_lines(capsys, tmp_path: Path, reference: Path) -> None:
    src = make_clip(tmp_path / "shot.mp4", frames=8, audio=False)
    assert main([str(src), "--look", str(reference), "--mode", "fast", "-o", str(tmp_path / "o.mp4")]) == 0
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert any(line.startswith("render 8/8 100%") for line in lines), err
    assert "━" not in err and "\x1b[" not in err


def test_every_positional_argument_has_help() -> None:
    def walk(p: argparse.ArgumentParser) -> list[str]:
        missing = []
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for sp in a.choices.values():
                    missing += walk(sp)
            elif not a.option_strings and not a.help:
                missing.append(a.dest)
        return missing

    for make in (cli.grade_parser, cli.shots_parser, cli.scene_parser, cli.presets_parser, cli.conform_parser):
        assert walk(make()) == [], make.__name__
