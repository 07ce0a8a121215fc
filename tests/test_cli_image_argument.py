"""`visualfinder photo.jpg` (how file managers run "Open with") means: the app, with that image
as the query. Commands, options and anything that is not an existing file keep their meaning."""

from __future__ import annotations

from pathlib import Path

import pytest
from imagegen import write_image

from visualfinder.cli.main import build_parser, split_image_arguments


@pytest.fixture
def photo(tmp_path) -> Path:
    return write_image(tmp_path / "customer photo.jpg", seed=3)


def split(*argv: str):
    return split_image_arguments(build_parser(), list(argv))


def test_an_existing_file_as_the_first_word_becomes_the_query(photo):
    assert split(str(photo)) == ([], [str(photo)])


def test_global_options_before_the_file_are_kept_for_the_app(photo, tmp_path):
    argv, images = split("--data-dir", str(tmp_path / "lib"), "-v", "--device", "cpu", str(photo))
    assert argv == ["--data-dir", str(tmp_path / "lib"), "-v", "--device", "cpu"]
    assert images == [str(photo)]


def test_file_urls_from_a_file_manager_become_paths(photo):
    assert split(photo.as_uri()) == ([], [str(photo)])


def test_several_files_are_all_passed_on_and_the_first_is_searched(photo, tmp_path):
    other = write_image(tmp_path / "b.png", seed=4)
    assert split(str(photo), str(other))[1] == [str(photo), str(other)]


def test_a_double_dash_lets_a_file_named_like_a_command_be_the_query(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "status", seed=5, fmt="PNG")  # a file called "status" here
    assert split("status") == (["status"], [])  # the command wins
    assert split("--", "status") == ([], ["status"])


@pytest.mark.parametrize(
    "argv",
    [
        ["search", "PHOTO", "-k", "3"],  # a command with the image as its argument
        ["missing.jpg"],  # not a file: argparse says "invalid choice"
        ["PHOTO", "missing.jpg"],  # a file and a typo: let argparse complain
        ["--data-dir", "PHOTO"],  # the file is an option's value, not a query
        [],
    ],
)
def test_commands_and_non_files_are_left_to_argparse(photo, argv):
    argv = [str(photo) if word == "PHOTO" else word for word in argv]
    assert split(*argv) == (argv, [])


def test_a_missing_file_still_gets_argparses_error(cli, tmp_path):
    result = cli(str(tmp_path / "nothing-here.jpg"))
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
