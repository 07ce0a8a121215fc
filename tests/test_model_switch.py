"""Model switching: re-embed into a new generation while the old index answers; atomic swap; resume."""

from __future__ import annotations

import threading

import pytest
from imagegen import make_catalog, write_image
from searching import query_vector

from visualfinder.errors import QueryError
from visualfinder.ingest.retry import PERMANENT, TRANSIENT
from visualfinder.jobs import CancelToken
from visualfinder.search.request import QueryTerm, SearchRequest

OLD_KEY = "vf-tiny/random-seed0"
NEW_KEY = "vf-tiny-b/random-seed0"


def _similar(library, path, k=3):
    return library.search(SearchRequest([QueryTerm("similar", path)], k=k)).results


def test_switching_the_model_re_embeds_every_image_and_swaps(library, tmp_path, reopen):
    files = make_catalog(tmp_path / "catalog", 6)
    library.index([tmp_path / "catalog"])
    report = library.models.switch("vf-tiny-b", "none")
    assert report.swapped and not report.cancelled and report.embedded == 6 and not report.skipped
    assert library.model_key == NEW_KEY and library.vector_index.spec.ndim == 48
    assert len(library.vector_index) == 6 and library.models.pending_switch() is None
    assert _similar(library, files[3])[0].path == str(files[3])
    assert query_vector(library, QueryTerm("image", files[3])).shape == (48,)
    assert library.status().stored_models == {NEW_KEY: 6, OLD_KEY: 6}
    status = library.status()
    assert (status.model, status.model_key, status.requested_model_key) == ("vf-tiny-b", NEW_KEY, OLD_KEY)
    library.close()
    # The model belongs to the library: settings still naming vf-tiny do not switch it back.
    again = reopen()
    assert again.model_key == NEW_KEY and again.index_health == "ok" and len(again.vector_index) == 6
    assert _similar(again, files[0])[0].path == str(files[0])


def test_the_old_index_keeps_answering_while_the_new_model_embeds(settings, tmp_path, reopen):
    library = reopen(batch_size=2)
    files = make_catalog(tmp_path / "catalog", 6)
    library.index([tmp_path / "catalog"])
    reached, release = threading.Event(), threading.Event()

    def progress(p):
        if p.phase == "switching model" and p.done >= 2 and not reached.is_set():
            reached.set()
            assert release.wait(60)

    job = library.models.start_switch("vf-tiny-b", "none", progress)
    assert reached.wait(120), job.error
    # Mid-switch: searches run on the old model, and indexing goes on with it too.
    assert library.model_key == OLD_KEY
    assert _similar(library, files[1])[0].path == str(files[1])
    assert query_vector(library, QueryTerm("text", "sofa")).shape == (64,)
    late = write_image(tmp_path / "catalog" / "late.jpg", 77)
    assert library.index().added == 1
    state = library.models.pending_switch()
    assert state.target.key == NEW_KEY and 2 <= state.embedded < state.total == 7
    release.set()
    assert job.wait(120) and job.error is None and job.result.swapped
    assert library.model_key == NEW_KEY and len(library.vector_index) == 7
    # The image indexed during the switch was embedded by the new model before the swap.
    assert _similar(library, late)[0].path == str(late)


def test_an_interrupted_switch_resumes_where_it_stopped(settings, tmp_path, reopen):
    library = reopen(batch_size=2)
    make_catalog(tmp_path / "catalog", 6)
    library.index([tmp_path / "catalog"])
    cancel = CancelToken()

    def progress(p):
        if p.phase == "switching model" and p.done >= 2:
            cancel.cancel()

    report = library.models.switch("vf-tiny-b", "none", progress, cancel)
    assert report.cancelled and not report.swapped
    assert library.model_key == OLD_KEY and len(library.vector_index) == 6
    done_before = library.models.pending_switch().embedded
    assert 2 <= done_before < 6
    library.close()

    resumed = reopen(batch_size=2)
    state = resumed.models.pending_switch()
    assert state is not None and state.target.key == NEW_KEY and state.embedded == done_before
    assert resumed.status().switch.embedded == done_before
    report = resumed.models.switch(state.target.name, state.target.pretrained)
    assert report.swapped and report.already == done_before and report.embedded == 6 - done_before
    assert resumed.model_key == NEW_KEY and resumed.models.pending_switch() is None


def test_a_switch_skips_unreadable_files_and_the_next_index_run_heals(library, tmp_path):
    files = make_catalog(tmp_path / "catalog", 4)
    library.index([tmp_path / "catalog"])
    files[2].unlink()
    write_image(files[1], 99)  # changed since indexing
    report = library.models.switch("vf-tiny-b", "none")
    assert report.swapped and report.embedded == 2
    assert sorted(e.path for e in report.skipped) == sorted([str(files[1]), str(files[2])])
    kinds = {e.path: e.kind for e in report.skipped}  # the gone file could not be read now
    assert kinds == {str(files[1]): PERMANENT, str(files[2]): TRANSIENT}
    assert library.status().stats.needs_embedding == 2
    result = library.index()
    assert result.removed == 1 and result.updated == 1
    assert library.status().stats.needs_embedding == 0 and len(library.vector_index) == 3


def test_identical_files_get_their_twins_vector_during_a_switch(library, tmp_path):
    files = make_catalog(tmp_path / "catalog", 3)
    (tmp_path / "catalog" / "copy.jpg").write_bytes(files[0].read_bytes())
    library.index([tmp_path / "catalog"])
    report = library.models.switch("vf-tiny-b", "none")
    assert report.embedded + report.copied == 4 and report.embedded <= 3
    assert library.catalog.model_counts()[NEW_KEY] == 4


def test_another_process_follows_a_switch_on_its_next_search(library, tmp_path, reopen):
    files = make_catalog(tmp_path / "catalog", 4)
    library.index([tmp_path / "catalog"])
    other = reopen()
    assert other.model_key == OLD_KEY
    library.models.switch("vf-tiny-b", "none")
    assert _similar(other, files[2])[0].path == str(files[2])
    assert other.model_key == NEW_KEY and other.vector_index.spec.ndim == 48


def test_switching_back_reuses_the_stored_vectors_and_old_ones_can_be_forgotten(library, tmp_path):
    make_catalog(tmp_path / "catalog", 3)
    library.index([tmp_path / "catalog"])
    library.models.switch("vf-tiny-b", "none")
    back = library.models.switch("vf-tiny", "none")
    assert back.swapped and back.embedded == 0 and back.already == 3
    with pytest.raises(QueryError, match="in use"):
        library.models.forget(OLD_KEY)
    assert library.models.forget(NEW_KEY) == 3
    assert library.status().stored_models == {OLD_KEY: 3}


def test_an_unknown_target_model_changes_nothing(library, tmp_path):
    make_catalog(tmp_path / "catalog", 2)
    library.index([tmp_path / "catalog"])
    with pytest.raises(Exception, match="unknown model"):
        library.models.switch("no-such-model", "none")
    assert library.models.pending_switch() is None and library.model_key == OLD_KEY


def test_the_swap_queues_every_document_for_the_mirror(library, tmp_path):
    files = make_catalog(tmp_path / "catalog", 3)
    library.index([tmp_path / "catalog"])
    library.catalog.enable_outbox()
    library.models.switch("vf-tiny-b", "none")
    queued = library.catalog.conn.execute(
        "SELECT op, image_id, doc_id FROM outbox ORDER BY image_id"
    ).fetchall()
    ids = sorted(library.image_id(f) for f in files)
    assert queued == [("upsert", i, library.catalog.doc_id(i)) for i in ids]
