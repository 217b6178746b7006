"""The server under concurrent clients and faults, over 127.0.0.1 with real sockets: SIGTERM during load drains
(no 5xx, no reset, exit 143), a client that sends less than its Content-Length (or half a request head) is cut
off and blocks nobody, a full queue answers 503, /metrics is Prometheus text, and `semid serve-bench --clients`."""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from semid.serve import ModelServer, load_artifact
from semid.serve.bench import json_body, synthetic_requests
from semid.serve.loadtest import RESETS, ServerProcess
from semid.serve.settings import ServeSettings


def _post(port: int, body: bytes, timeout: float = 60) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/score", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_sigterm_during_load_drains_the_requests_in_flight(study, tmp_path):  # noqa: ANN001
    """8 keep-alive clients score back to back; SIGTERM arrives while requests are in flight. Every request the
    server took is answered 200, then connections are refused (never reset, never a 5xx); exit 143."""
    art = load_artifact(study.hash)
    bodies = [json_body(synthetic_requests(art, 512, seed=i)) for i in range(4)]
    server = ServerProcess(study.hash, ["--workers", "1"], log=tmp_path / "server.log")
    outcomes: list[tuple[str, float, float]] = []  # (ok | refused | reset | <status> | <error>, sent, done)
    lock = threading.Lock()

    def client(k: int) -> None:
        conn: http.client.HTTPConnection | None = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
                    conn.connect()
            except ConnectionRefusedError:
                with lock:
                    outcomes.append(("refused", t0, time.monotonic()))
                return
            try:
                conn.request("POST", "/score", bodies[k % len(bodies)], {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                kind = "ok" if resp.status == 200 else str(resp.status)
                if resp.will_close:
                    conn.close()
                    conn = None
            except RESETS as e:
                kind = f"reset ({type(e).__name__})"
                conn = None
            except OSError as e:
                kind = f"error ({type(e).__name__})"
                conn = None
            with lock:
                outcomes.append((kind, t0, time.monotonic()))

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(8)]
    for t in threads:
        t.start()
    while sum(o[0] == "ok" for o in list(outcomes)) < 16:
        time.sleep(0.01)
        assert server.proc.poll() is None
    t_signal = time.monotonic()
    rc = server.stop(timeout=60)
    for t in threads:
        t.join(90)
    kinds = {o[0] for o in outcomes}
    assert kinds <= {"ok", "refused"}, sorted(kinds)
    in_flight = [o for o in outcomes if o[0] == "ok" and o[1] < t_signal < o[2]]
    assert in_flight, "no request was in flight when SIGTERM arrived"
    assert sum(o[0] == "refused" for o in outcomes) == 8  # every client ends refused: the listener is closed
    assert rc == 143
    log = (tmp_path / "server.log").read_text()
    assert "semid: serve stopped by SIGTERM" in log and "Traceback" not in log, log


@pytest.fixture(scope="module")
def hash_server(study):  # noqa: ANN001, ANN201
    with ModelServer(study.hash, ServeSettings(port=0, body_timeout=1.0, header_timeout=1.0)) as s:
        assert s.state.loaded.wait(120) and s.scorer is not None, s.state.load_error
        yield s


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_slow_body_is_cut_off_and_blocks_no_one(hash_server):  # noqa: ANN001
    host, port = hash_server.address
    body = json.dumps({"requests": [{"item_id": int(hash_server.scorer.artifact.items.item_id[0])}]}).encode()
    slow = socket.create_connection((host, port), timeout=30)
    t0 = time.monotonic()
    slow.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                 + body[:10])
    for _ in range(5):  # meanwhile others are served at once
        code, answer = _post(port, body)
        assert code == 200 and len(answer["scores"]) == 1
    assert time.monotonic() - t0 < 1.0  # before the slow client's timeout
    answer = _read_all(slow)  # 408, then the server closes the connection
    waited = time.monotonic() - t0
    slow.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408") and b"connection: close" in head.lower(), answer
    assert json.loads(payload) == {"error": "the body did not arrive within 1 s (10 of 1,000 bytes received; send the "
                                            "whole body at once, or raise --body-timeout)"}
    assert 1.0 <= waited < 10.0


def test_half_a_request_head_is_cut_off(hash_server):  # noqa: ANN001
    host, port = hash_server.address
    silent = socket.create_connection((host, port), timeout=30)
    slow = socket.create_connection((host, port), timeout=30)
    t0 = time.monotonic()
    slow.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Le")
    assert hash_server.state.readiness()[0] == 200 and _post(port, b'{"requests": [{"item_id": 1}]}')[0] == 200
    answer = _read_all(slow)
    assert answer.startswith(b"HTTP/1.1 408") and b"--header-timeout" in answer, answer
    assert _read_all(silent) == b""  # connected and said nothing: closed
    assert 1.0 <= time.monotonic() - t0 < 10.0
    slow.close()
    silent.close()


def test_a_full_queue_answers_503_at_once(study):  # noqa: ANN001
    with ModelServer(study.hash, ServeSettings(port=0, workers=1, queue=0)) as s:
        assert s.state.loaded.wait(120) and s.scorer is not None
        score, entered, release = s.scorer.score, threading.Event(), threading.Event()

        def held(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 -- the real scorer, held until released
            entered.set()
            release.wait(30)
            return score(*args, **kwargs)

        s.scorer.score = held  # type: ignore[method-assign]
        body = json.dumps({"requests": [{"item_id": int(s.scorer.artifact.items.item_id[0])}]}).encode()
        first: list[tuple[int, dict]] = []
        t = threading.Thread(target=lambda: first.append(_post(s.address[1], body)))
        t.start()
        assert entered.wait(30)
        conn = http.client.HTTPConnection(*s.address, timeout=30)
        conn.request("POST", "/score", body)
        resp = conn.getresponse()
        answer = json.loads(resp.read())
        conn.close()
        assert resp.status == 503 and resp.getheader("Retry-After") == "1"
        assert answer == {"error": "the server is at capacity (1 scoring, 0 queued); retry shortly, or raise --queue / "
                                   "--workers"}
        release.set()
        t.join(30)
        assert first[0][0] == 200


def test_metrics_are_prometheus_text(hash_server):  # noqa: ANN001
    port = hash_server.address[1]
    known = int(hash_server.scorer.artifact.items.item_id[0])
    new_id = int(hash_server.scorer.artifact.items.item_id.max()) + 10
    assert _post(port, json.dumps({"requests": [{"item_id": known}, {"item_id": new_id}]}).encode())[0] == 200
    assert _post(port, b'{"requests": [{"item_id": "x"}]}')[0] == 400
    conn = http.client.HTTPConnection(*hash_server.address, timeout=30)
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = {(s.labels["path"], s.labels["status"]): s.value for s in families["semid_http_requests"].samples
                if s.name == "semid_http_requests_total"}
    assert requests[("/score", "200")] >= 1 and requests[("/score", "400")] >= 1
    latency = {s.name: s.value for s in families["semid_http_request_duration_seconds"].samples
               if s.labels.get("path") == "/score" and s.labels.get("le") in (None, "+Inf")}
    assert latency["semid_http_request_duration_seconds_count"] >= 2
    assert families["semid_http_requests_in_flight"].samples[0].value == 1  # this scrape
    scored = {s.labels["status"]: s.value for s in families["semid_scored_items"].samples if s.name.endswith("_total")}
    assert scored["known"] >= 1 and scored["new"] >= 1
    assert families["semid_new_item_cache_misses"].samples[0].value >= 1
    assert families["semid_new_item_cache_capacity"].samples[0].value == 100_000
    assert {"semid_new_item_cache_hits", "semid_new_item_cache_evictions", "semid_new_item_cache_replaced",
            "semid_score_queue_depth", "semid_new_item_cache_entries"} <= set(families)


def test_serve_bench_clients_reports_every_level(study, tmp_path):  # noqa: ANN001
    from semid.cli import main

    assert main(["serve-bench", str(study.hash), "--clients", "1,4", "--batch-sizes", "1,8", "--seconds", "0.5",
                 "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "load.json").read_text())
    assert [(lv["batch"], lv["clients"]) for lv in result["levels"]] == [(1, 1), (1, 4), (8, 1), (8, 4)]
    for lv in result["levels"]:
        assert lv["requests"] > 0 and lv["errors"] == 0 and lv["resets"] == 0, lv
        assert 0 < lv["p50_ms"] <= lv["p99_ms"] and lv["items_per_s"] == pytest.approx(lv["requests_per_s"] * lv["batch"])
    assert result["errors"] == 0 and result["most_clients"] == 4 and result["ratio"] > 0
    assert "| 8 | 4 |" in (tmp_path / "load.md").read_text()
