"""`visualfinder sync` end to end: settings, the keyring, TLS and AWS options, exit codes."""

from __future__ import annotations

import io
import json

import pytest
from imagegen import make_catalog
from osmem_server import OsmemServer
from remote_helpers import basic_auth, remote_docs

from visualfinder.cli.main import main
from visualfinder.config import Settings, tomllib, update_settings_file  # tomli on 3.10
from visualfinder.errors import SettingsError
from visualfinder.library.facade import open_library

FAST = ["remote_backoff_s = 0.01", "remote_backoff_max_s = 0.05", "remote_max_retries = 2"]


def fast_settings(data_dir):
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "settings.toml").write_text("\n".join(FAST) + "\n")


def test_sync_with_a_url_saves_it_and_a_stopped_server_gives_exit_code_3(
    tmp_path, data_dir, remote_cli, capsys
):
    fast_settings(data_dir)
    make_catalog(tmp_path / "c", 4)
    assert main(["index", str(tmp_path / "c")]) == 0
    server = OsmemServer.start(japanese=False)
    try:
        proc = remote_cli("sync", "--url", server.url, "--index", "shop")  # the real entry point
        assert proc.returncode == 0, proc.stderr
        assert "4 documents sent" in proc.stdout and "(full push)" in proc.stdout
        saved = tomllib.loads((data_dir / "settings.toml").read_text())
        assert saved["remote_url"] == server.url and saved["remote_index"] == "shop"
        assert "model" not in saved  # only what the command set is written, not env overrides
    finally:
        server.close()
    (tmp_path / "c" / "product_0000.jpg").unlink()
    assert main(["index"]) == 0
    capsys.readouterr()

    proc = remote_cli("sync")

    assert proc.returncode == 3
    assert "cannot reach OpenSearch" in proc.stderr
    assert "1 changed images are kept in the outbox" in proc.stderr
    main(["sync", "--status", "--json"])
    status = json.loads(capsys.readouterr().out)
    assert (
        status["pending"] == 1 and status["index"] == "shop" and "connection refused" in status["last_error"]
    )
    assert status["last_success"] is not None


def test_the_password_is_kept_in_the_keyring_never_in_settings_or_logs(
    data_dir, proxy, test_keyring, monkeypatch, capsys
):
    fast_settings(data_dir)
    secret = "s3cret-Pa55word"
    monkeypatch.setattr("sys.stdin", io.StringIO(secret + "\n"))

    code = main(["-vv", "sync", "--url", proxy.url, "--user", "alice", "--password-stdin"])

    out = capsys.readouterr()
    assert code == 0, out.err
    assert "stored the password for alice" in out.err
    assert secret in test_keyring.read_text()
    assert secret not in (data_dir / "settings.toml").read_text()
    assert secret not in out.out + out.err
    assert {basic_auth(r.headers.get("Authorization")) for r in proxy.requests()} == {f"alice:{secret}"}

    assert main(["sync", "--forget-password"]) == 0
    assert "removed the stored password" in capsys.readouterr().err and secret not in test_keyring.read_text()
    assert main(["sync"]) == 1
    assert "no password stored for alice" in capsys.readouterr().err


def test_turning_tls_verification_off_is_explicit_and_warned_about(data_dir, capsys):
    fast_settings(data_dir)
    assert main(["sync", "--url", "https://127.0.0.1:9", "--insecure"]) == 3
    assert "TLS certificate verification is OFF for https://127.0.0.1:9" in capsys.readouterr().err
    assert tomllib.loads((data_dir / "settings.toml").read_text())["remote_verify_tls"] is False
    main(["sync", "--verify-tls"])
    assert tomllib.loads((data_dir / "settings.toml").read_text())["remote_verify_tls"] is True


def test_live_push_is_on_by_default_and_switched_with_no_live_and_live(data_dir, osmem_clone):
    fast_settings(data_dir)
    assert main(["sync", "--url", osmem_clone.url]) == 0
    assert Settings.load(data_dir).remote_live_push is True
    assert main(["sync", "--no-live"]) == 0
    assert tomllib.loads((data_dir / "settings.toml").read_text())["remote_live_push"] is False
    assert main(["sync", "--live"]) == 0
    assert Settings.load(data_dir).remote_live_push is True


def test_requests_are_signed_with_sigv4_for_amazon_opensearch(settings, proxy, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    lib = open_library(
        settings.replace(remote_url=proxy.url, remote_aws_region="eu-west-1", remote_max_retries=0)
    )
    try:
        lib.remote.sync()
    finally:
        lib.close()
    auth = [r.headers.get("Authorization", "") for r in proxy.requests()]
    assert auth and all(a.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") for a in auth)
    assert all("/eu-west-1/es/aws4_request" in a for a in auth)
    assert all("X-Amz-Date" in r.headers for r in proxy.requests())


def test_disable_stops_recording_changes(tmp_path, data_dir, osmem_clone, os_client, capsys):
    fast_settings(data_dir)
    make_catalog(tmp_path / "c", 2)
    main(["index", str(tmp_path / "c")])
    assert main(["sync", "--url", osmem_clone.url]) == 0
    assert main(["sync", "--disable"]) == 0
    assert "sync is off" in capsys.readouterr().out
    make_catalog(tmp_path / "c", 1, start_seed=40)
    main(["index"])
    capsys.readouterr()
    main(["sync", "--status", "--json"])
    status = json.loads(capsys.readouterr().out)
    assert status == status | {"configured": False, "enabled": False, "pending": 0}
    assert len(remote_docs(os_client)) == 2  # the remote index is left as it was


def test_bad_remote_settings_are_refused_with_a_reason(data_dir):
    with pytest.raises(SettingsError, match="must not contain a password"):
        update_settings_file(data_dir, remote_url="https://bob:pw@search.example.com")
    with pytest.raises(SettingsError, match="nmslib is deprecated"):
        Settings.load(remote_engine="nmslib")
    with pytest.raises(SettingsError, match="not a valid OpenSearch index name"):
        Settings.load(remote_index="My Index")
    with pytest.raises(SettingsError, match="not an http"):
        Settings.load(remote_url="search.example.com:9200")
    assert not (data_dir / "settings.toml").exists()
