import json
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from pricetune.errors import PricetuneError
from pricetune.serving import Batcher, make_server, parse_request


def _post(url, payload):
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, method="POST"), timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_parse_request_rules():
    assert parse_request(b'{"description": "a pen"}') == (["a pen"], True)
    assert parse_request(b'{"descriptions": ["a", "b"]}') == (["a", "b"], False)
    for bad in [b"not json", b"[]", b"{}", b'{"description": "a", "descriptions": ["b"]}',
                b'{"descriptions": []}', b'{"descriptions": ["ok", 3]}', b'{"description": "  "}']:
        with pytest.raises(PricetuneError):
            parse_request(bad)


def test_server_batches_concurrent_requests_and_matches_the_pricer(tiny_model_dir, demo_splits):
    from pricetune.inference import Pricer, load_model

    pricer = Pricer(load_model(base_model=str(tiny_model_dir), quantization="none", precision="fp32"), batch_size=8)
    texts = [r["prompt"] for r in demo_splits["test"][:8]]
    expected = [pricer.price(t) for t in texts]  # one by one, before the server exists

    batcher = Batcher(pricer, batch_size=8, max_wait_ms=300)
    server = make_server(batcher, port=0, label="tiny")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda t: _post(url + "/price", {"description": t}), texts))
        assert [status for status, _ in replies] == [200] * 8
        assert [body["price"] for _, body in replies] == expected
        assert batcher.batches < 8  # concurrent clients shared batches
        status, body = _post(url + "/price", {"descriptions": texts[:3]})
        assert status == 200 and body["prices"] == expected[:3]
        status, body = _post(url + "/price", b"{oops")
        assert status == 400 and "JSON" in body["error"]
        assert _post(url + "/nowhere", {})[0] == 404
        with urllib.request.urlopen(url + "/health", timeout=10) as r:
            health = json.loads(r.read())
        assert health["status"] == "ok" and health["model"] == "tiny"
    finally:
        server.shutdown()
        server.server_close()
