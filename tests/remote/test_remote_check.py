"""Testing a connection (`sync --check`, the app's Test connection): version, k-NN plugin, mapping."""

from __future__ import annotations

import json

from imagegen import make_catalog

from visualfinder.cli.main import main


def test_the_check_reports_the_version_the_knn_plugin_and_whether_the_index_fits(
    proxy, synced, tmp_path, reopen
):
    proxy.script.knn = True  # the proxy lists the k-NN plugin, as a real cluster does
    library = synced(proxy.url)
    make_catalog(tmp_path / "c", 3)
    library.index([tmp_path / "c"])

    before = library.remote.check()
    assert (before.distribution, before.version, before.knn_plugin) == ("opensearch", "3.8.0", True)
    assert not before.index_exists and before.mapping_ok and "first sync creates it" in before.mapping_message
    assert before.ok

    library.remote.sync()
    seen = len(proxy.requests())
    after = library.remote.check()
    assert after.index_exists and after.mapping_ok and after.documents == 3
    assert "matches this library" in after.mapping_message
    writes = [(r.method, r.path) for r in proxy.requests()[seen:] if r.method not in ("GET", "HEAD")]
    assert all("_count" in path for _, path in writes)  # a check changes nothing
    library.close()

    other = reopen(remote_url=proxy.url, metric="l2")  # settings ask for another metric...
    other.models.set_metric("l2")  # ...and the library switched: the remote index no longer fits
    mismatch = other.remote.check()
    assert (
        not mismatch.mapping_ok
        and not mismatch.ok
        and "compares vectors by cosinesimil" in mismatch.mapping_message
    )


def test_a_cluster_without_the_knn_plugin_fails_the_check_on_the_cli(osmem_clone, data_dir, tmp_path, capsys):
    make_catalog(tmp_path / "c", 2)
    assert main(["index", str(tmp_path / "c")]) == 0
    assert main(["sync", "--url", osmem_clone.url]) == 0  # saved; osmem stores vectors without the plugin
    capsys.readouterr()

    assert main(["sync", "--check"]) == 1
    out = capsys.readouterr().out
    assert "opensearch 3.8.0" in out and "k-NN:       NOT installed" in out and "2 documents" in out

    assert main(["sync", "--check", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["knn_plugin"] is False and data["mapping_ok"] is True and data["ok"] is False
