"""Settings › OpenSearch against a real osmem server (behind the tests' HTTP proxy, which also
plays the k-NN plugin): the password in the keyring, Test connection, Full resync, Sync now, the
outbox, and searching the cluster from the filters panel."""

from __future__ import annotations

import keyring
import keyring.backend
import pytest
from guihelpers import WAIT_MS, drop, search_and_wait
from opensearchpy import OpenSearch
from PySide6.QtCore import QMimeData, Qt, QUrl
from PySide6.QtWidgets import QDialogButtonBox
from remote.remote_helpers import FAST_REMOTE, ClusterProxy, basic_auth, remote_docs

from visualfinder.remote.credentials import KEYRING_SERVICE


class MemoryKeyring(keyring.backend.KeyringBackend):
    """The system keyring's stand-in: entries in a dict."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service, username):
        return self.entries.get((service, username))

    def set_password(self, service, username, password):
        self.entries[(service, username)] = password

    def delete_password(self, service, username):
        from keyring.errors import PasswordDeleteError

        if self.entries.pop((service, username), None) is None:
            raise PasswordDeleteError("no such password")


@pytest.fixture
def memory_keyring(monkeypatch):
    monkeypatch.delenv("VISUALFINDER_REMOTE_PASSWORD", raising=False)
    previous = keyring.get_keyring()
    ring = MemoryKeyring()
    keyring.set_keyring(ring)
    yield ring
    keyring.set_keyring(previous)


@pytest.fixture
def proxy(osmem_clone):
    p = ClusterProxy(osmem_clone.url)
    p.script.knn = True
    yield p
    p.close()


def open_page(qtbot, window):
    dialog = window.library_actions.open_settings()
    page = dialog.opensearch
    dialog.tabs.setCurrentWidget(page)
    return dialog, page


def test_the_cluster_is_set_up_tested_and_synced_from_settings_and_searched_from_the_filters(
    qtbot, make_window, catalog_dir, settings, memory_keyring, proxy, osmem_clone, data_dir
):
    window = make_window([catalog_dir], settings_=settings.replace(**FAST_REMOTE))
    assert not window.filters.remote.isVisible()  # no cluster yet: nothing to search there
    dialog, page = open_page(qtbot, window)
    assert page.verify_tls.isChecked() and not page.tls_warning.isVisible()  # TLS verified by default

    page.url.setText(proxy.url)
    page.index.setText("shop")
    qtbot.keyClicks(page.user, "shop")
    qtbot.keyClicks(page.password, "s3cret")
    page.live_push.setChecked(False)
    with qtbot.waitSignal(page.checked, timeout=WAIT_MS) as checked:
        qtbot.mouseClick(page.test_button, Qt.MouseButton.LeftButton)
    check = checked.args[0]
    assert (check.version, check.knn_plugin, check.index_exists) == ("3.8.0", True, False)
    text = page.result.text()
    assert "opensearch 3.8.0" in text and "k-NN plugin: installed" in text and "first sync creates it" in text
    assert {basic_auth(r.headers.get("Authorization")) for r in proxy.requests()} == {"shop:s3cret"}
    assert memory_keyring.entries == {}  # tested before it is stored
    assert not page.sync_button.isEnabled()  # Sync now uses the saved settings, which have no cluster yet

    with qtbot.waitSignal(window.session.opened, timeout=WAIT_MS):
        qtbot.mouseClick(dialog.buttons.button(QDialogButtonBox.StandardButton.Ok), Qt.MouseButton.LeftButton)
    assert memory_keyring.entries == {(KEYRING_SERVICE, f"shop@{proxy.url}"): "s3cret"}
    saved = (data_dir / "settings.toml").read_text()
    assert proxy.url in saved and "s3cret" not in saved and "remote_live_push = false" in saved

    dialog, page = open_page(qtbot, window)
    qtbot.waitUntil(lambda: page.password_stored is True, timeout=WAIT_MS)
    assert page.password.placeholderText() == "stored in the system keyring"
    assert page.sync_button.isEnabled() and page.resync_button.isEnabled()
    with qtbot.waitSignal(page.synced, timeout=WAIT_MS) as synced:
        qtbot.mouseClick(page.resync_button, Qt.MouseButton.LeftButton)
    assert synced.args[0].full and synced.args[0].sent == 12
    client = OpenSearch(hosts=[osmem_clone.url])
    assert len(remote_docs(client, "shop")) == 12
    qtbot.waitUntil(lambda: "Outbox: 0 changes waiting" in page.status.text(), timeout=WAIT_MS)

    tagged = window.session.edit_tags(
        [window.session.library.image_id(catalog_dir / "product_0002.jpg")], ["oak"], []
    )
    qtbot.waitUntil(lambda: tagged.done, timeout=WAIT_MS)
    with qtbot.waitSignal(page.statusShown, timeout=WAIT_MS):
        page.refresh_status()
    assert "Outbox: 1 change waiting" in page.status.text()
    with qtbot.waitSignal(page.synced, timeout=WAIT_MS) as synced:
        qtbot.mouseClick(page.sync_button, Qt.MouseButton.LeftButton)
    assert synced.args[0].sent == 1 and not synced.args[0].full
    qtbot.waitUntil(lambda: "Outbox: 0 changes waiting" in page.status.text(), timeout=WAIT_MS)
    assert "Last sync: never" not in page.status.text()
    dialog.reject()

    assert window.filters.remote.isVisible()  # a cluster is configured: the search can go there
    window.filters.remote.setChecked(True)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(catalog_dir / "product_0002.jpg"))])
    response = search_and_wait(qtbot, window, lambda: drop(window, mime))
    assert response.plan.where == "remote" and window.current_request().remote
    assert response.results[0].path == str(catalog_dir / "product_0002.jpg")
    assert "on OpenSearch" in window.summary.text()


def test_an_unreachable_cluster_and_tls_without_verification_are_explained(
    qtbot, make_window, settings, memory_keyring, tmp_path
):
    window = make_window(settings_=settings.replace(**FAST_REMOTE))
    dialog, page = open_page(qtbot, window)
    gone = ClusterProxy("http://127.0.0.1:9")
    url = gone.url
    gone.close()  # nothing listens there any more
    page.url.setText(url)
    with qtbot.waitSignal(page.checkFailed, timeout=WAIT_MS) as failed:
        qtbot.mouseClick(page.test_button, Qt.MouseButton.LeftButton)
    assert "cannot reach OpenSearch" in failed.args[0] and "cannot reach OpenSearch" in page.result.text()

    page.url.setText("ftp://example.com")
    qtbot.mouseClick(page.test_button, Qt.MouseButton.LeftButton)
    assert "is not an http(s) URL" in page.result.text()

    page.verify_tls.setChecked(False)
    assert page.tls_warning.isVisible()
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    window.dialogs.files["CA certificates"] = str(bundle)
    qtbot.mouseClick(page.browse_ca, Qt.MouseButton.LeftButton)
    assert page.ca_bundle.text() == str(bundle)
    page.url.setText("https://search.example.com:9200")
    chosen = dialog.values()
    assert (chosen.remote_verify_tls, chosen.remote_ca_bundle) == (False, str(bundle))
    dialog.reject()
