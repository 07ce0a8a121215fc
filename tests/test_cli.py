"""The CLI contract from ARCHITECTURE.md, end to end through `python -m visualfinder`."""

from __future__ import annotations

import csv
import json

from imagegen import make_catalog, write_image

from visualfinder.cli.main import main


def test_index_search_status_and_rebuild_end_to_end(cli, tmp_path, data_dir):
    chairs, lamps = tmp_path / "chairs", tmp_path / "lamps"
    files = make_catalog(chairs, 6)
    make_catalog(lamps, 4, start_seed=20)
    (chairs / "broken.jpg").write_text("nope")

    proc = cli("index", str(chairs), str(lamps))
    assert proc.returncode == 0, proc.stderr
    assert "10 added" in proc.stdout and "1 skipped" in proc.stdout
    assert "broken.jpg: not an image" in proc.stderr

    proc = cli("search", str(files[1]), "--json", "-k", "3")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert len(results) == 3
    assert results[0]["path"] == str(files[1]) and results[0]["score"] > 0.999
    assert set(results[0]) >= {
        "path",
        "score",
        "distance",
        "id",
        "title",
        "tags",
        "description",
        "sku",
        "url",
    }

    proc = cli("status", "--json")
    status = json.loads(proc.stdout)
    assert status["ok"] == 10 and status["errors"] == 1 and status["data_dir"] == str(data_dir)
    assert status["model"] == "vf-tiny" and status["metric"] == "cosine"
    assert status["index"]["count"] == 10 and status["index"]["health"] == "ok"
    assert status["error_files"][0]["path"].endswith("broken.jpg")

    (data_dir / "index.usearch").unlink()
    proc = cli("rebuild-index")
    assert proc.returncode == 0 and "10 vectors" in proc.stdout
    again = json.loads(cli("search", str(files[1]), "--json", "-k", "3").stdout)
    assert [r["id"] for r in again] == [r["id"] for r in results]


def test_global_options_go_before_the_command_and_env_vars_work(cli, tmp_path):
    files = make_catalog(tmp_path / "catalog", 3)
    other = tmp_path / "other-data"
    proc = cli("--data-dir", str(other), "--model", "vf-tiny", "--pretrained", "none", "--device", "cpu",
               "index", str(tmp_path / "catalog"), env={"VISUALFINDER_MODEL": "no-such-model"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (other / "catalog.db").exists()
    proc = cli("search", str(files[0]), "--json", env={"VISUALFINDER_DATA_DIR": str(other)})
    assert json.loads(proc.stdout)[0]["path"] == str(files[0])


def test_search_table_folder_filter_and_csv(tmp_path, capsys):
    chairs, lamps = tmp_path / "chairs", tmp_path / "lamps"
    files = make_catalog(chairs, 4)
    make_catalog(lamps, 4, start_seed=10)
    assert main(["index", str(chairs), str(lamps)]) == 0
    capsys.readouterr()
    out_csv = tmp_path / "results.csv"
    assert main(["search", str(files[0]), "--folder", str(chairs), "--csv", str(out_csv), "-k", "20"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[0].split() == ["rank", "score", "path", "title"]
    assert len(lines) == 5 and str(files[0]) in lines[1]
    with open(out_csv, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["path"] for r in rows][0] == str(files[0])
    assert all(r["path"].startswith(str(chairs)) for r in rows) and len(rows) == 4


def test_text_and_similar_queries(tmp_path, capsys):
    files = make_catalog(tmp_path / "catalog", 4)
    assert main(["index", str(tmp_path / "catalog")]) == 0
    capsys.readouterr()
    assert main(["search", "--text", "red leather armchair", "-k", "2", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    assert main(["search", "--similar", str(files[2]), "-k", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["path"] == str(files[2])


def test_errors_are_one_line_on_stderr_with_nonzero_exit(tmp_path, capsys):
    query = write_image(tmp_path / "q.jpg", 3)
    assert main(["search", str(query)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("visualfinder: error: the library has no indexed images") and err.count("\n") == 1

    assert main(["index", str(tmp_path / "missing")]) == 2
    assert "folder not found" in capsys.readouterr().err

    make_catalog(tmp_path / "catalog", 2)
    main(["index", str(tmp_path / "catalog")])
    capsys.readouterr()
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\x00\x01garbage")
    assert main(["search", str(bad)]) == 2
    assert "cannot use" in capsys.readouterr().err

    assert main(["search"]) == 2
    assert "give a query" in capsys.readouterr().err

    not_weights = tmp_path / "weights.bin"
    not_weights.write_bytes(b"garbage, not a checkpoint")
    assert (
        main(
            [
                "--data-dir",
                str(tmp_path / "other"),
                "--pretrained",
                str(not_weights),
                "index",
                str(tmp_path / "catalog"),
            ]
        )
        != 0
    )
    err = capsys.readouterr().err
    assert err.endswith("the file is not a model checkpoint\n") and err.count("\n") == 1


def test_k_larger_than_the_library_returns_every_image(tmp_path, capsys):
    files = make_catalog(tmp_path / "catalog", 5)
    main(["index", str(tmp_path / "catalog")])
    capsys.readouterr()
    assert main(["search", str(files[0]), "-k", "500", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 5


def test_reindexing_without_paths_updates_every_folder(tmp_path, capsys):
    make_catalog(tmp_path / "catalog", 2)
    assert main(["index"]) == 2
    assert "no catalog folders yet" in capsys.readouterr().err
    main(["index", str(tmp_path / "catalog")])
    write_image(tmp_path / "catalog" / "new.jpg", 99)
    capsys.readouterr()
    assert main(["index"]) == 0
    assert "1 added" in capsys.readouterr().out
