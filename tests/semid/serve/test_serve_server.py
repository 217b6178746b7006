"""The HTTP endpoint on 127.0.0.1 (a free port): a scored batch, health and readiness, every error path as a 4xx
with a one-line reason (never a 500 with a traceback), the OpenAPI schema, and the `semid serve` command."""
from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pytest

from semid.serve import ModelServer, Scorer, load_artifact, requests_from_arrow
from semid.serve.settings import ServeSettings

from .conftest import one_line_error


@pytest.fixture(scope="module")
def server(study):  # noqa: ANN001, ANN201
    with ModelServer(study.spm, ServeSettings(port=0)) as s:
        assert s.state.loaded.wait(120) and s.scorer is not None, s.state.load_error
        yield s


def _call(server: ModelServer, method: str, path: str, body: bytes | str | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict]:
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        data = body.encode() if isinstance(body, str) else body
        conn.request(method, path, data, headers or {})
        resp = conn.getresponse()
        raw = resp.read().decode()
    finally:
        conn.close()
    assert resp.getheader("Content-Type") == "application/json"
    assert raw.count("\n") == 1 and "Traceback" not in raw  # one line of JSON
    return resp.status, json.loads(raw)


def test_a_batch_is_scored_as_semid_score_scores_it(server, study):  # noqa: ANN001
    art = load_artifact(study.spm)
    known = art.items.item_id
    rows = [{"item_id": int(known[0]), "watch_item_id": int(known[1]), "history_item_ids": [int(known[2])]},
            {"item_id": int(known[5]), "watch_item_id": None, "day": art.schema.default_day},
            {"item_id": int(known[7])}]
    code, answer = _call(server, "POST", "/score", json.dumps({"requests": rows}))
    assert code == 200 and answer["model"] == art.fingerprint and len(answer["scores"]) == 3
    table = pa.table({"item_id": pa.array([r["item_id"] for r in rows], pa.int64()),
                      "watch_item_id": pa.array([r.get("watch_item_id") for r in rows], pa.int64()),
                      "history_item_ids": pa.array([r.get("history_item_ids", []) for r in rows], pa.list_(pa.int64()))})
    ref = Scorer(art).score(requests_from_arrow(table, "t", art.schema))
    got = np.array([[s["ctr_logit"], s["engaged_logit"]] for s in answer["scores"]])
    assert np.abs(got - ref.logits).max() <= 1e-5
    assert [s["status"] for s in answer["scores"]] == ["known"] * 3
    assert [s["sid"] for s in answer["scores"]] == ref.sid.tolist()
    assert all(0 < s["ctr"] < 1 for s in answer["scores"])


def test_health_readiness_and_schema(server):  # noqa: ANN001
    assert _call(server, "GET", "/healthz") == (200, {"status": "ok"})
    code, ready = _call(server, "GET", "/readyz")
    assert code == 200 and ready["status"] == "ready" and ready["representation"] == "spm_64"
    code, schema = _call(server, "GET", "/schema")
    assert code == 200 and schema["roles"] == ["candidate", "watch"] and schema["history_length"] == 50


@pytest.mark.parametrize("body, status, reason", [
    ("{not json", 400, "invalid JSON: key must be a string at line 1 column 2"),
    ("[1, 2]", 400, "the body must be a JSON object with a 'requests' list"),
    ('{"requests": []}', 400, "'requests' must be a non-empty list"),
    ('{"requests": [{"watch_item_id": 3}]}', 400, "requests[0].item_id is missing"),
    ('{"requests": [{"item_id": "12"}]}', 400, "requests[0].item_id must be a non-negative integer, not a string"),
    ('{"requests": [{"item_id": 1, "history_item_ids": 5}]}', 400, "requests[0].history_item_ids must be a list"),
    ('{"requests": [{"item_id": 1, "history_item_ids": [1, -2]}]}', 400, "requests[0].history_item_ids[1] must be a "
     "non-negative"),
    ('{"requests": [{"item_id": 1, "itemid": 2}]}', 400, "requests[0].itemid: unknown field 'itemid'"),
    ('{"requests": [{"item_id": 1}], "extra": 1}', 400, "extra: unknown field 'extra' (fields: requests, allow_unknown)"),
    ('{"requests": [{"item_id": 1, "embedding": [0.1, "x"]}]}', 400, "requests[0].embedding[1] must be a number, not "
     "a string"),
    ('{"requests": [{"item_id": true}]}', 400, "requests[0].item_id must be a non-negative integer, not a boolean"),
    ('{"requests": [{"item_id": 1.5}]}', 400, "requests[0].item_id must be a non-negative integer, not a float"),
    ('{"requests": [{"item_id": 99999999999999999999}]}', 400, "must be a non-negative 64-bit integer"),
    ('{"requests": [{"item_id": 1, "embedding": [0.1, 0.2]}]}', 400, "row 0 has dimension 2"),
    ('{"requests": [{"item_id": 1}], "allow_unknown": "yes"}', 400, "allow_unknown must be true or false"),
    ('{"requests": [{"item_id": 999999999}]}', 422, "field 'item_id': 1 item id(s) the model does not know"),
    ('{"requests": [{"item_id": KNOWN, "watch_item_id": 999999999}]}', 422, "field 'watch_item_id'"),
    ('{"requests": [{"item_id": KNOWN, "history_item_ids": [KNOWN, 999999999]}]}', 422, "field 'history_item_ids'"),
])
def test_malformed_requests_get_a_4xx_with_a_one_line_reason(server, body, status, reason):  # noqa: ANN001
    body = body.replace("KNOWN", str(int(server.scorer.artifact.items.item_id[0])))
    code, answer = _call(server, "POST", "/score", body)
    assert code == status and reason in answer["error"] and "\n" not in answer["error"], answer


def test_allow_unknown_scores_an_unknown_item(server, study):  # noqa: ANN001
    known = int(load_artifact(study.spm).items.item_id[0])
    code, answer = _call(server, "POST", "/score", json.dumps(
        {"requests": [{"item_id": 999999999}, {"item_id": known}], "allow_unknown": True}))
    assert code == 200 and [s["status"] for s in answer["scores"]] == ["unknown", "known"]
    assert answer["scores"][0]["sid"] is None


def test_protocol_errors(server):  # noqa: ANN001
    assert _call(server, "GET", "/nope")[0] == 404
    assert _call(server, "GET", "/score") == (405, {"error": "/score takes POST with a JSON body"})
    assert _call(server, "POST", "/healthz", "{}") == (405, {"error": "/healthz takes GET"})
    assert _call(server, "DELETE", "/score")[0] == 405
    code, answer = _call(server, "POST", "/score", b"\xff\xfe", {"Content-Length": "2"})
    assert code == 400 and answer["error"].startswith("invalid JSON: ")
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=60)  # a POST without Content-Length
    conn.putrequest("POST", "/score")
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 411 and "Content-Length" in json.loads(resp.read())["error"]
    conn.close()


def test_the_openapi_schema_describes_the_request_and_the_answer(server):  # noqa: ANN001
    conn = http.client.HTTPConnection(*server.address, timeout=60)
    conn.request("GET", "/openapi.json")
    resp = conn.getresponse()
    doc = json.loads(resp.read())
    conn.close()
    assert resp.status == 200
    body = doc["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ScoreBody"}
    schemas = doc["components"]["schemas"]
    assert set(schemas["ScoreRequest"]["properties"]) == {"item_id", "watch_item_id", "history_item_ids", "embedding",
                                                          "day", "first_day"}
    assert schemas["ScoreRequest"]["required"] == ["item_id"] and schemas["ScoreBody"]["additionalProperties"] is False
    assert {"200", "400", "413", "422", "503"} <= set(doc["paths"]["/score"]["post"]["responses"])


def test_a_body_over_the_limit_is_refused_and_a_bug_is_a_500_without_traceback(study):  # noqa: ANN001
    with ModelServer(study.hash, ServeSettings(port=0, max_body_bytes=100)) as s:
        assert s.state.loaded.wait(120)
        code, answer = _call(s, "POST", "/score", json.dumps({"requests": [{"item_id": 1}] * 20}))
        assert code == 413 and "at most 100" in answer["error"]

        def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            raise ValueError("a bug")

        s.scorer.score = broken  # type: ignore[method-assign, union-attr]
        code, answer = _call(s, "POST", "/score", '{"requests": [{"item_id": 1}]}')
        assert code == 500 and answer == {"error": "internal error (ValueError); the server log has the details"}


def test_readiness_reports_a_model_that_failed_to_load(tmp_path):  # noqa: ANN001
    with ModelServer(tmp_path / "missing", ServeSettings(port=0)) as s:
        assert s.state.loaded.wait(60)
        assert _call(s, "GET", "/healthz")[0] == 200
        code, ready = _call(s, "GET", "/readyz")
        assert code == 503 and ready["status"] == "failed" and "no such model directory" in ready["error"]
        code, answer = _call(s, "POST", "/score", '{"requests": [{"item_id": 1}]}')
        assert code == 503 and "no such model directory" in answer["error"]


@pytest.mark.parametrize("argv, expected", [
    (["--workers", "0"], "--workers must be >= 1, got 0"),
    (["--body-timeout", "0"], "--body-timeout must be a positive number of seconds, got 0.0"),
    (["--port", "70000"], "--port must be in 0..65535"),
    (["--max-body-mb", "-1"], "--max-body-mb must be positive, got -1"),
])
def test_semid_serve_refuses_bad_settings_in_one_line(study, capsys, argv, expected):  # noqa: ANN001
    from semid.cli import main

    one_line_error(capsys, main(["serve", str(study.hash), *argv]), expected)


def test_semid_serve_refuses_a_missing_model_and_a_busy_port_in_one_line(study, tmp_path, capsys):  # noqa: ANN001
    from semid.cli import main

    one_line_error(capsys, main(["serve", str(tmp_path / "nope")]), "no such model directory")
    assert not (tmp_path / "nope").exists()
    with ModelServer(study.hash, ServeSettings(port=0)) as s:
        one_line_error(capsys, main(["serve", str(study.hash), "--port", str(s.address[1])]),
                       f"cannot listen on 127.0.0.1:{s.address[1]} (Address already in use); choose another --port")


def test_semid_serve_command_serves_until_interrupted(study):  # noqa: ANN001
    proc = subprocess.Popen([sys.executable, "-m", "semid.cli", "serve", str(study.hash), "--host", "127.0.0.1",
                             "--port", "0", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith(f"serving {study.hash} on http://127.0.0.1:"), line
        port = int(line.split("http://127.0.0.1:")[1].split(" ")[0])
        deadline = time.time() + 120
        while True:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/readyz")
            resp = conn.getresponse()
            body = json.loads(resp.read())
            conn.close()
            if resp.status == 200:
                break
            assert body["status"] == "loading" and time.time() < deadline, body
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        # as every semid command stopped by a signal: 130 after SIGINT (143 after SIGTERM: test_serve_load.py)
        assert proc.returncode == 130, (proc.returncode, err)
        assert err.strip().splitlines() == ["semid: serve stopped by SIGINT: new connections refused, requests in "
                                            "progress answered"], err
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)


def test_serve_bench_measures_every_model_batch_size_and_path(study, tmp_path):  # noqa: ANN001
    from semid.cli import main

    assert main(["serve-bench", str(study.hash), str(study.spm_int8), "--batch-sizes", "1,8", "--seconds", "0.05",
                 "--min-calls", "4", "--rounds", "2", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "serve.json").read_text())["rows"]
    cells = {(r["representation"], r["quantization"], r["batch"], r["path"]) for r in rows}
    assert cells == {(m, q, b, p) for m, q in (("hash_8k", "fp32"), ("spm_64", "int8")) for b in (1, 8)
                     for p in ("in-process", "http")}
    assert all(r["calls"] >= 4 and 0 < r["p50_ms"] <= r["p99_ms"] and r["requests_per_s"] > 0 for r in rows)
    assert "| spm_64 | int8 | 8 | http |" in (tmp_path / "serve.md").read_text()


def test_semid_serve_stops_in_one_line_when_the_model_cannot_load(study, tmp_path, capsys):  # noqa: ANN001
    import shutil

    from semid.cli import main

    broken = tmp_path / "broken"
    shutil.copytree(study.hash, broken)
    ranker = broken / "ranker.pt"
    ranker.write_bytes(ranker.read_bytes()[:100])  # truncated
    before = sorted(p.name for p in broken.iterdir())
    one_line_error(capsys, main(["serve", str(broken), "--port", "0"]), f"{ranker}: ")
    assert sorted(p.name for p in broken.iterdir()) == before
