"""The ceiling: a bare Flask app that reads the same JSON order body and
answers 201 with a little JSON, served by the same gunicorn settings. Our
order placement is reported as a fraction of what this reaches.

`gunicorn tests.bench.bare_app:app`
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request

app = Flask(__name__)


@app.post("/api/v1/orders")
def place_order() -> tuple[dict[str, Any], int]:
    body = request.get_json()
    return {"id": 1, "status": "pending_payment", "lines": len(body["lines"])}, 201
