"""`pricetune serve`: the price API and its web page (FastAPI on uvicorn).

    pricetune serve --run runs/demo                        # http://127.0.0.1:8000/  (page), /docs (API)
    curl -s localhost:8000/price -d '{"description": "Title: 1.01 carat Ideal cut round diamond"}'
    # {"price": 4215.0}
    curl -s localhost:8000/price -d '{"descriptions": ["Title: a pen", "Title: a kettle"]}'
    # {"prices": [3.0, 24.0]}
    PRICETUNE_API_KEY=... pricetune serve --run runs/demo --host 0.0.0.0   # off loopback: a key is required
    curl -s -H "Authorization: Bearer $PRICETUNE_API_KEY" http://HOST:8000/price -d '{"description": "..."}'

Works for generate runs (greedy / expected / median decoding), regress runs and ensembles. SIGTERM
or Ctrl-C: stop accepting, finish the requests in flight, exit 0. On loopback without an API key,
requests must be addressed to this machine (Host: localhost, 127.0.0.1 or [::1]). docs/SERVING.md has the load
figures (`pricetune bench serve`).
"""

# The command line (serving/cli.py) imports no server library until `serve` runs: the 'serve' extra is
# optional. The app is in serving/app.py, the batching worker in serving/batcher.py.
