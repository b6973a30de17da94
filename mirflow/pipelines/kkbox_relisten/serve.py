"""``mirflow serve-model``: a kkbox_relisten run's model behind HTTP (FastAPI + uvicorn).

    POST /predict  {"rows": [{"msno": …, "song_id": …, "source_system_tab": …,
                    "source_screen_name": …, "source_type": …}, …]} -> {"predictions": [p, …]}
    GET  /health   {"status": "ok"}
    GET  /model    run id, model, its metrics, the expected fields

The model and the side tables load once, at start. A body over ``max_body_bytes`` or
more than ``max_rows`` rows gets 413 (the size is checked while the body streams in, so
an oversized body is never held whole); a malformed one 422 naming the row and field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request  # at module level: FastAPI resolves the handlers' string annotations here

from mirflow.pipelines.kkbox_relisten.features import ROW_FIELDS
from mirflow.pipelines.kkbox_relisten.scoring import Scorer
from mirflow.runs import Run

REQUIRED = ("msno", "song_id")  # the source fields may be empty or null, as in train.csv


@dataclass(frozen=True)
class Limits:
    max_rows: int = 10_000
    max_body_bytes: int = 10_000_000


class RequestError(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def parse_rows(body: bytes, limits: Limits) -> list[dict]:
    """The request's rows, each with every field as a string ("" for an empty source field)."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise RequestError(422, f"body is not JSON: {error}") from None
    rows = payload.get("rows") if isinstance(payload, dict) else None
    if not isinstance(rows, list):
        raise RequestError(422, 'body must be {"rows": [ {…}, … ]}')
    if len(rows) > limits.max_rows:
        raise RequestError(413, f"{len(rows)} rows; at most {limits.max_rows} per request")
    clean = []
    for number, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RequestError(422, f"rows[{number}]: not an object")
        values = {}
        for field in ROW_FIELDS:
            value = row.get(field)
            if value is None and field not in REQUIRED:
                value = ""
            if not isinstance(value, str) or (field in REQUIRED and not value):
                problem = "missing" if value is None else f"must be a non-empty string, got {value!r}" if field in REQUIRED else f"must be a string, got {value!r}"
                raise RequestError(422, f"rows[{number}].{field}: {problem}")
            values[field] = value
        clean.append(values)
    return clean


def create_app(scorer: Scorer, limits: Limits = Limits()):
    import pandas as pd
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    app = FastAPI(title="mirflow kkbox_relisten", version="1")
    metrics = scorer.run.metrics["models"].get(scorer.model_name, {})

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
            raise RequestError(413, f"body of {declared} bytes; at most {limits.max_body_bytes}")
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > limits.max_body_bytes:
                raise RequestError(413, f"body over {limits.max_body_bytes} bytes")
        return bytes(body)

    @app.post("/predict")
    async def predict(request: Request):
        try:
            rows = parse_rows(await read_body(request), limits)
        except RequestError as error:
            return JSONResponse({"detail": error.detail}, status_code=error.status)
        if not rows:
            return {"predictions": []}
        scores, _ = await run_in_threadpool(scorer.score, pd.DataFrame(rows, columns=list(ROW_FIELDS)))
        return {"predictions": [float(s) for s in scores]}

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/model")
    async def model():
        return {"run_id": scorer.run.run_id, "model": scorer.model_name, "metrics": metrics,
                "fields": list(ROW_FIELDS), "tables": str(scorer.tables), "limits": limits.__dict__}

    return app


def run_server(run: Run, host: str, port: int, tables: str | Path | None, model: str | None, limits: Limits) -> None:
    import uvicorn

    uvicorn.run(create_app(Scorer(run, tables, model), limits), host=host, port=port, log_level="info")
