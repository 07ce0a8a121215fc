"""Settings: defaults < settings.toml < env vars < explicit overrides."""

from __future__ import annotations

import pytest

from visualfinder.config import DEFAULT_MODEL, Settings
from visualfinder.errors import SettingsError


def test_env_vars_pick_data_dir_and_model(data_dir):
    s = Settings.load()
    assert s.data_dir == data_dir and s.model == "vf-tiny" and s.pretrained == "none" and s.device == "cpu"


def test_settings_file_is_read_and_env_and_overrides_win(data_dir, monkeypatch):
    monkeypatch.delenv("VISUALFINDER_MODEL")
    Settings.load().replace(model="ViT-B-32", thumbnail_size=128, metric="ip").save()
    s = Settings.load()
    assert (s.model, s.thumbnail_size, s.metric) == ("ViT-B-32", 128, "ip")
    monkeypatch.setenv("VISUALFINDER_MODEL", "vf-tiny")
    assert Settings.load().model == "vf-tiny"
    assert Settings.load(model="RN50").model == "RN50"
    assert Settings.load(model=None).model == "vf-tiny"


def test_defaults_without_env(monkeypatch, tmp_path):
    for var in ("VISUALFINDER_MODEL", "VISUALFINDER_PRETRAINED", "VISUALFINDER_DEVICE"):
        monkeypatch.delenv(var)
    s = Settings.load(tmp_path)
    assert s.model == DEFAULT_MODEL and s.pretrained == "datacomp_s34b_b86k" and s.device == "auto"


def test_invalid_values_are_refused_with_a_reason(tmp_path):
    with pytest.raises(SettingsError, match="metric must be one of"):
        Settings.load(tmp_path, metric="manhattan")
    (tmp_path / "settings.toml").write_text("thumbnail_size = 'big'\n")
    with pytest.raises(SettingsError, match="thumbnail_size"):
        Settings.load(tmp_path)
    (tmp_path / "settings.toml").write_text("not toml [[[")
    with pytest.raises(SettingsError, match="cannot read settings file"):
        Settings.load(tmp_path)
