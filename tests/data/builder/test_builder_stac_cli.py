"""`zoomsr data search` against a local STAC API (a tiny http.server on 127.0.0.1, no network)
and `zoomsr data build` from the command line."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from zoomsr.data.builder import load_index, read_manifest
from zoomsr.data.builder.stac import hr_entry, parse_bbox, s2_entry
from zoomsr.data.check import check_dataset
from zoomsr.errors import InputError

CONFORMS = ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"]


def s2_item(scene_dir, item_id: str, when: str, baseline: str = "02.13", cloud: float = 5.0):
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": item_id,
        "collection": "sentinel-2-l2a", "bbox": [-94, 41, -93, 42],
        "geometry": {"type": "Polygon", "coordinates": [[[-94, 41], [-93, 41], [-93, 42],
                                                         [-94, 42], [-94, 41]]]},
        "properties": {"datetime": when, "s2:processing_baseline": baseline,
                       "s2:product_type": "S2MSI2A", "eo:cloud_cover": cloud},
        "links": [],
        "assets": {
            "visual": {"href": str(scene_dir / "TCI.tif"), "type": "image/tiff"},
            "nir": {"href": str(scene_dir / "B08.tif"), "type": "image/tiff",
                    "raster:bands": [{"scale": 0.0001, "offset": 0}]},
            "rededge1": {"href": str(scene_dir / "B05.tif")},
            "scl": {"href": str(scene_dir / "SCL.tif")},
            "visual-jp2": {"href": "s3://not/used.jp2"},
            "thumbnail": {"href": "https://example.invalid/t.jpg"},
        },
    }


class StacHandler(BaseHTTPRequestHandler):
    """Landing page, conformance and /search (GET or POST), filtering by collection and time."""

    items: list[dict] = []
    searches: list[dict] = []

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def _send(self, doc: dict) -> None:
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        from urllib.parse import parse_qs, urlparse

        url = urlparse(self.path)
        if url.path in ("", "/"):
            base = self._base()
            self._send({"type": "Catalog", "id": "local", "stac_version": "1.0.0",
                        "description": "test API", "conformsTo": CONFORMS, "links": [
                            {"rel": "self", "href": base + "/"},
                            {"rel": "root", "href": base + "/"},
                            {"rel": "search", "href": base + "/search",
                             "type": "application/geo+json", "method": "POST"},
                            {"rel": "search", "href": base + "/search",
                             "type": "application/geo+json", "method": "GET"}]})
        elif url.path == "/conformance":
            self._send({"conformsTo": CONFORMS})
        elif url.path == "/search":
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            self._search({"collections": q.get("collections", "").split(","),
                          "datetime": q.get("datetime"), "bbox": q.get("bbox")})
        else:
            self.send_error(404)

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", 0))
        self._search(json.loads(self.rfile.read(length) or b"{}"))

    def _search(self, body: dict) -> None:
        StacHandler.searches.append(body)
        start, end = (body.get("datetime") or "../..").split("/")
        found = [i for i in self.items
                 if i["collection"] in body.get("collections", [])
                 and (start in ("", "..") or i["properties"]["datetime"] >= start)
                 and (end in ("", "..") or i["properties"]["datetime"] <= end)]
        self._send({"type": "FeatureCollection", "features": found, "links": []})


@pytest.fixture
def stac_api(builder_scene):
    scenes = builder_scene.s2
    StacHandler.items = [
        s2_item(scenes["clear"], "S2A_clear", "2019-08-01T17:00:00Z"),
        s2_item(scenes["cloudy"], "S2B_cloudy", "2019-09-20T17:00:00Z", cloud=60.0),
        s2_item(scenes["late"], "S2A_late", "2020-03-01T17:00:00Z", baseline="04.00"),
        {"type": "Feature", "stac_version": "1.0.0", "id": "ia_m_4109363_ne_15_1_20190904",
         "collection": "naip", "bbox": [-94, 41, -93, 42], "geometry": None, "links": [],
         "properties": {"datetime": "2019-09-04T00:00:00Z", "gsd": 1.5},
         "assets": {"image": {"href": str(builder_scene.hr_path), "type": "image/tiff"}}},
    ]
    StacHandler.searches = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), StacHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_search_writes_a_manifest_the_builder_reads(stac_api, cli, tmp_path, builder_scene):
    manifest = tmp_path / "manifest.json"
    code, out, err = cli("data", "search", "--url", stac_api, "--bbox", "-93.63,41.58,-93.60,41.60",
                         "--start", "2019-09-01", "--end", "2019-09-30", "--out", manifest,
                         "--max-scene-cloud", "50")
    assert code == 0, err
    assert "1 Sentinel-2 and 1 high-res items" in out
    doc = json.loads(manifest.read_text())
    assert doc["query"]["bbox"] == [-93.63, 41.58, -93.60, 41.60]
    # Sentinel-2 searched 90 days around the high-res dates; the cloudy item was dropped and
    # the late one (2020-03-01) is outside the searched interval.
    assert [e["id"] for e in doc["sentinel2"]] == ["S2A_clear"]
    assert set(doc["sentinel2"][0]["assets"]) == {"tci", "b08", "b05", "scl"}
    s2_search = next(s for s in StacHandler.searches if "sentinel-2-l2a" in s["collections"])
    assert s2_search["datetime"].startswith("2019-06-03") and "2019-12-29" in s2_search["datetime"]
    sources = read_manifest(manifest)
    assert sources.highres[0].id == "ia_m_4109363_ne_15_1_20190904"

    out_dir = tmp_path / "ds"
    code, out, err = cli("data", "build", out_dir, "--manifest", manifest, "--bands", "tci,b08",
                         "--no-progress")
    assert code == 0, err
    assert "9 pairs on 9 tiles" in out and "highres_partly_outside_or_nodata 16" in out
    assert check_dataset(out_dir, bands=("tci", "b08")).errors == []
    assert load_index(out_dir)["sentinel2"][0]["id"] == "S2A_clear"
    code, out, err = cli("data", "check", out_dir, "--no-progress")
    assert code == 0 and "0 error(s)" in out


def test_search_errors(cli, tmp_path, stac_api):
    code, _, err = cli("data", "search", "--bbox", "1,2,3", "--start", "2019-01-01", "--end",
                       "2019-02-01", "--out", tmp_path / "m.json", "--url", stac_api)
    assert code == 2 and "bbox" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("data", "search", "--bbox", "1,2,3,4", "--start", "2019-03-01", "--end",
                       "2019-02-01", "--out", tmp_path / "m.json", "--url", stac_api)
    assert code == 2 and "before --start" in err
    # Nothing listens on this port: a runtime failure (exit 1), one readable line.
    code, _, err = cli("data", "search", "--bbox", "1,2,3,4", "--start", "2019-01-01", "--end",
                       "2019-02-01", "--out", tmp_path / "m.json", "--url",
                       "http://127.0.0.1:9/")
    assert code == 1 and "cannot open STAC API" in err and len(err.strip().splitlines()) == 1
    assert "connection refused by 127.0.0.1" in err
    assert "NewConnectionError" not in err and "HTTPConnectionPool" not in err


def test_search_refuses_bad_limits_before_any_request(cli, tmp_path):
    """Nothing listens at the URL: a bad option is a usage error (2), not the network's (1)."""
    base = ["data", "search", "--bbox", "1,2,3,4", "--start", "2019-01-01", "--end",
            "2019-02-01", "--out", tmp_path / "m.json", "--url", "http://127.0.0.1:9/"]
    for option, value, words in (("--max-items", "0", ">= 1"), ("--max-items", "-2", ">= 1"),
                                 ("--max-scene-cloud", "150", "0..100"),
                                 ("--max-scene-cloud", "-1", "0..100"),
                                 ("--window-days", "-1", ">= 0")):
        code, out, err = cli(*base, option, value)
        assert code == 2 and len(err.strip().splitlines()) == 1, (option, value, err)
        assert option in err and words in err and out == ""
    assert not (tmp_path / "m.json").exists()


def test_search_offline_says_why_in_words(cli, tmp_path, monkeypatch):
    """No network (name resolution fails): one line naming the URL and the host, no urllib3
    repr."""
    import socket

    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    code, _, err = cli("data", "search", "--bbox", "1,2,3,4", "--start", "2019-01-01",
                       "--end", "2019-02-01", "--out", tmp_path / "m.json")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert ("error: cannot open STAC API https://earth-search.aws.element84.com/v1: cannot "
            "resolve host earth-search.aws.element84.com: no network, or a wrong URL?") in err
    assert "NameResolutionError" not in err and "HTTPSConnectionPool" not in err


def test_stac_entries():
    assert parse_bbox("-1,-2,3,4") == (-1.0, -2.0, 3.0, 4.0)
    with pytest.raises(InputError, match="west<east"):
        parse_bbox("3,0,1,1")
    item = s2_item(__import__("pathlib").Path("/x"), "a", "2022-03-01T00:00:00Z", "04.00")
    item["assets"]["nir"]["raster:bands"][0]["offset"] = -0.1
    entry = s2_entry(item)
    assert entry["dn_offset"] == -1000 and entry["assets"]["tci"] == "/x/TCI.tif"
    with pytest.raises(InputError, match="no image asset"):
        hr_entry({"id": "n", "assets": {"thumbnail": {"href": "t.jpg"}}, "properties": {}})


def test_build_cli_inputs_and_errors(cli, tmp_path, builder_scene):
    out = tmp_path / "ds"
    args = ["data", "build", out, "--s2", builder_scene.s2["clear"], "--s2",
            builder_scene.s2["cloudy"], "--hr", builder_scene.hr_path, "--no-progress",
            "--split-group", "2", "--max-frames", "1", "--workers", "1"]
    code, stdout, err = cli(*args)
    assert code == 0, err
    assert "9 pairs on 9 tiles" in stdout and "tiles/s" in stdout
    # a split without tiles (9 tiles in few groups) is warned about on stderr, naming it
    shares = dict(re.findall(r"(train|val|test) (\d+)", stdout))
    for name, count in shares.items():
        assert (f"warning: no {name} tiles" in err) == (count == "0"), (name, stdout, err)
    index = load_index(out)
    assert all(len([f for f in t["frames"] if f["status"] == "kept"]) == 1
               for t in index["tiles"] if t["status"] == "written")
    code, stdout, _ = cli(*args)  # resume: nothing left to do
    assert code == 0 and "0 written now, 9 already there" in stdout and "0/1 blocks" in stdout
    code, _, err = cli("data", "build", tmp_path / "x", "--no-progress")
    assert code == 2 and "no inputs" in err
    code, _, err = cli("data", "build", tmp_path / "x", "--s2", tmp_path / "nope",
                       "--hr", builder_scene.hr_path)
    assert code == 2 and "nope: not found" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("data", "build", tmp_path / "x", "--s2", builder_scene.s2["late"],
                       "--hr", builder_scene.hr_path, "--no-progress")
    assert code == 2 and "no Sentinel-2 scene within 90 days" in err
    code, _, err = cli("data", "build", tmp_path / "x", "--s2", builder_scene.s2["clear"],
                       "--hr", builder_scene.hr_path, "--split-fractions", "1,1,1")
    assert code == 2 and "sum to 1" in err


def test_build_cli_uses_a_high_res_file_given_twice_once(cli, tmp_path, builder_scene):
    """`--hr a.tif --hr a.tif --hr folder_of_a`, or a manifest listing it and --hr: one image
    and a one-line note (they were written as images m_..., m_...-1, m_...-2, every pair
    three times)."""
    hr = builder_scene.hr_path
    out = tmp_path / "ds"
    code, stdout, err = cli("data", "build", out, "--s2", builder_scene.s2["clear"], "--hr", hr,
                            "--hr", hr, "--hr", hr.parent, "--no-progress", "-j", "1")
    assert code == 0, err
    assert sorted(p.name for p in (out / "naip").iterdir()) == [hr.stem]
    assert "9 pairs on 9 tiles" in stdout
    notes = [line for line in err.splitlines() if "high-res input" in line]
    assert notes == [f"warning: {hr}: given 3 times as a high-res input; used once"]
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"format": "zoomsr-manifest", "sentinel2": [], "highres": [
        {"href": str(hr)}, {"href": str(hr)}]}))
    code, stdout, err = cli("data", "build", tmp_path / "ds2", "--manifest", manifest, "--s2",
                            builder_scene.s2["clear"], "--hr", hr, "--no-progress", "-j", "1")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "ds2" / "naip").iterdir()) == [hr.stem]
    assert "9 pairs on 9 tiles" in stdout
    assert [line for line in err.splitlines() if "high-res input" in line] == [
        f"warning: {hr}: given 2 times as a high-res input; used once",  # in the manifest
        f"warning: {hr}: given 2 times as a high-res input; used once"]  # manifest and --hr


@pytest.mark.parametrize("fractions", ["nan,0.5,0.5", "inf,0,0"])
def test_build_cli_refuses_non_finite_split_fractions(cli, tmp_path, builder_scene, fractions):
    """`--split-fractions nan,0.5,0.5` was accepted: exit 0, "train 0, val 0, test 374"."""
    out = tmp_path / "ds"
    code, stdout, err = cli("data", "build", out, "--s2", builder_scene.s2["clear"], "--hr",
                            builder_scene.hr_path, "--split-fractions", fractions,
                            "--no-progress", "-j", "1")
    assert code == 2 and not stdout and not out.exists()
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("error: split fractions must be finite numbers (train, val, test)")


def test_build_with_scale_3_passes_check(cli, tmp_path, builder_scene):
    """`data check` and `data info` use the scale the build recorded (96 px NAIP images)."""
    out = tmp_path / "bD"
    code, _, err = cli("data", "build", out, "--s2", builder_scene.s2["clear"], "--hr",
                       builder_scene.hr_path, "--scale", 3, "--no-progress", "--workers", 1)
    assert code == 0, err
    assert json.loads((out / "zoomsr_dataset.json").read_text())["scale"] == 3
    code, stdout, err = cli("data", "check", out, "--no-progress")
    assert code == 0 and "9 pairs, 9 tiles, 0 error(s)" in stdout, stdout
    code, stdout, err = cli("data", "info", out, "--json", "--no-progress")
    assert code == 0 and json.loads(stdout)["unreadable_tiles"] == [] and err == ""


def _search_args(url: str, out) -> list:
    return ["data", "search", "--url", url, "--bbox", "-93.63,41.58,-93.60,41.60", "--start",
            "2019-09-01", "--end", "2019-09-30", "--out", out]


def test_search_asks_for_the_collections_given(stac_api, cli, tmp_path, builder_scene):
    """`--s2-collection` / `--hr-collection` name the collections searched (each on its own;
    the other keeps the provider's) and are recorded in the manifest's query."""
    hr_item = next(i for i in StacHandler.items if i["collection"] == "naip")
    StacHandler.items = [
        *StacHandler.items,
        {**s2_item(builder_scene.s2["clear"], "S2A_mine", "2019-08-02T17:00:00Z"),
         "collection": "my-s2"},
        {**hr_item, "id": "my_hr_20190905", "collection": "my-naip",
         "properties": {"datetime": "2019-09-05T00:00:00Z", "gsd": 0.6}}]
    # both overridden; only Sentinel-2's (high-res still from "naip"); only the high-res one
    # (Sentinel-2 from "sentinel-2-l2a": the clear and cloudy items)
    cases = [
        ("both", ["--s2-collection", "my-s2", "--hr-collection", "my-naip"], "my-s2",
         "my-naip", ["S2A_mine"], ["my_hr_20190905"]),
        ("s2_only", ["--s2-collection", "my-s2"], "my-s2", "naip", ["S2A_mine"],
         ["ia_m_4109363_ne_15_1_20190904"]),
        ("hr_only", ["--hr-collection", "my-naip"], "sentinel-2-l2a", "my-naip",
         ["S2A_clear", "S2B_cloudy"], ["my_hr_20190905"]),
    ]
    for name, options, s2, hr, s2_ids, hr_ids in cases:
        StacHandler.searches = []
        manifest = tmp_path / f"{name}.json"
        code, out, err = cli(*_search_args(stac_api, manifest), *options)
        assert code == 0, err
        assert f"{len(s2_ids)} Sentinel-2 and {len(hr_ids)} high-res items" in out
        assert [s["collections"] for s in StacHandler.searches] == [[hr], [s2]]
        doc = json.loads(manifest.read_text())
        assert [e["id"] for e in doc["sentinel2"]] == s2_ids
        assert [e["id"] for e in doc["highres"]] == hr_ids
        assert (doc["query"]["sentinel2_collection"], doc["query"]["highres_collection"]) == (
            s2, hr), name


def test_search_planetary_computer_without_its_package(stac_api, cli, tmp_path, monkeypatch):
    """`--provider planetary-computer` needs `planetary_computer` to sign hrefs: without it,
    one line naming the extra, exit 2, before any request and without a manifest."""
    import sys

    monkeypatch.setitem(sys.modules, "planetary_computer", None)  # `import` raises ImportError
    manifest = tmp_path / "m.json"
    code, out, err = cli(*_search_args(stac_api, manifest), "--provider", "planetary-computer")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert "planetary-computer" in err and "pip install 'zoomsr[stac]'" in err
    assert StacHandler.searches == [] and not manifest.exists()


def test_search_planetary_computer_signs_every_item(stac_api, cli, tmp_path, monkeypatch):
    """With `planetary_computer` importable, every item found (high-res and Sentinel-2) goes
    through its `sign`, and the manifest holds the signed hrefs; earth-search signs nothing."""
    import sys
    import types

    import pystac

    signed: list = []

    def sign(obj, copy=True):
        signed.append(obj)
        out = obj.clone() if copy else obj
        for asset in out.assets.values():
            asset.href = asset.href + "?sig=fake"
        return out

    fake = types.ModuleType("planetary_computer")
    fake.sign = sign
    monkeypatch.setitem(sys.modules, "planetary_computer", fake)
    manifest = tmp_path / "m.json"
    code, out, err = cli(*_search_args(stac_api, manifest), "--provider", "planetary-computer")
    assert code == 0, err
    assert "2 Sentinel-2 and 1 high-res items" in out
    assert all(isinstance(item, pystac.Item) for item in signed)
    assert sorted(item.id for item in signed) == [
        "S2A_clear", "S2B_cloudy", "ia_m_4109363_ne_15_1_20190904"]
    doc = json.loads(manifest.read_text())
    assert doc["query"]["url"] == stac_api  # --url overrides the provider's API
    assert [e["id"] for e in doc["sentinel2"]] == ["S2A_clear", "S2B_cloudy"]
    hrefs = [h for e in doc["sentinel2"] for h in e["assets"].values()]
    hrefs += [e["href"] for e in doc["highres"]]
    assert len(hrefs) == 9 and all(h.endswith("?sig=fake") for h in hrefs), hrefs
    # the default provider does not sign, even with the package there
    signed.clear()
    code, _, err = cli(*_search_args(stac_api, tmp_path / "es.json"))
    assert code == 0, err
    doc = json.loads((tmp_path / "es.json").read_text())
    assert signed == [] and not any("sig=" in e["href"] for e in doc["highres"])
