"""``POST /score``'s JSON body and answer as pydantic models, and the body -> ``Requests`` arrays.

The body is validated by pydantic-core straight from the bytes (``ScoreBody.model_validate_json``) before any
scoring work: strict types (``"12"``, ``true`` and ``1.0`` are not item ids), ids in ``[0, 2^63)``, no unknown
fields, 1 to ``MAX_JSON_REQUESTS`` requests. A failure is a ``RequestError`` whose one line names the first bad
field the way a user writes it (``requests[3].history_item_ids[1]``). The same models give the OpenAPI schema
(``GET /openapi.json``).

Example::

    >>> from semid.serve.json_requests import ScoreBody, validation_message
    >>> ScoreBody.model_validate_json(b'{"requests": [{"item_id": 1, "history_item_ids": [2, 3]}]}').requests[0]
    ScoreRequest(item_id=1, watch_item_id=None, history_item_ids=[2, 3], embedding=None, day=None, first_day=None)
    >>> try:
    ...     ScoreBody.model_validate_json(b'{"requests": [{"item_id": "12"}]}')
    ... except Exception as e:
    ...     print(validation_message(e))
    requests[0].item_id must be a non-negative integer, not a string
"""
from __future__ import annotations

import itertools
import json
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError

from semid.core.errors import DataError
from semid.serve.artifact import FeatureSchema
from semid.serve.requests import COLUMNS, RequestError, Requests, embedding_matrix

MAX_JSON_REQUESTS = 65536
_INT64_MAX = 2 ** 63 - 1

ItemId = Annotated[StrictInt, Field(ge=0, le=_INT64_MAX)]
Day = Annotated[StrictInt, Field(ge=0, le=_INT64_MAX)]


class ScoreRequest(BaseModel):
    """One candidate to score (the columns of ``semid score``'s Parquet requests)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    item_id: ItemId = Field(description="the candidate")
    watch_item_id: ItemId | None = Field(None, description="the context item; null: none")
    history_item_ids: list[ItemId] | None = Field(None, description="the user's watch history, oldest first")
    embedding: list[StrictFloat | StrictInt] | None = Field(
        None, description="the candidate's content embedding: needed only when the model does not know the item")
    day: Day | None = Field(None, description="the day scored as of (default: the run's evaluation day)")
    first_day: Day | None = Field(None, description="an unknown candidate's first day (default: the request's day)")


class ScoreBody(BaseModel):
    """The body of ``POST /score``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    requests: list[ScoreRequest] = Field(min_length=1, max_length=MAX_JSON_REQUESTS)
    allow_unknown: bool | None = Field(None, description="score items the model cannot represent with an empty "
                                       "representation (default: the server's --allow-unknown)")


class Score(BaseModel):
    """One candidate's scores (``engaged`` and ``engaged_logit`` when the model has that task)."""

    model_config = ConfigDict(extra="allow")

    ctr: float
    ctr_logit: float
    status: str = Field(description="known, new (represented on the fly) or unknown (empty representation)")
    sid: list[int] | None = Field(None, description="the candidate's SID (SID representations); null: unknown")


class ScoreAnswer(BaseModel):
    """The answer of ``POST /score``: one score per request, in order."""

    model: str = Field(description="the artifact's fingerprint")
    scores: list[Score]


class ErrorAnswer(BaseModel):
    """Every 4xx / 5xx answer."""

    error: str = Field(description="one line: what is wrong and how to fix it")


def parse_body(raw: bytes, schema: FeatureSchema) -> tuple[Requests, bool | None]:
    """(requests, the body's ``allow_unknown``) of a raw ``POST /score`` body; ``RequestError`` if it is bad."""
    try:
        body = ScoreBody.model_validate_json(raw)
    except ValidationError as e:
        raise RequestError(validation_message(e)) from None
    return requests_from_body(body, schema), body.allow_unknown


def requests_from_json(body: object, schema: FeatureSchema) -> Requests:
    """Requests from a decoded JSON body ``{"requests": [{"item_id": 1, ...}, ...]}`` (checked as ``POST /score``
    checks it; ``allow_unknown`` is the caller's)."""
    try:
        return requests_from_body(ScoreBody.model_validate(body), schema)
    except ValidationError as e:
        raise RequestError(validation_message(e)) from None


def requests_from_body(body: ScoreBody, schema: FeatureSchema) -> Requests:
    """The validated body as arrays (embeddings checked against the model's content dimension)."""
    rows = body.requests
    n = len(rows)
    item_id = np.fromiter((r.item_id for r in rows), np.int64, n)
    watch = np.fromiter((-1 if r.watch_item_id is None else r.watch_item_id for r in rows), np.int64, n)
    day = np.fromiter((schema.default_day if r.day is None else r.day for r in rows), np.int64, n)
    first_day = np.fromiter((-1 if r.first_day is None else r.first_day for r in rows), np.int64, n)
    lengths = np.fromiter((len(r.history_item_ids or ()) for r in rows), np.int64, n)
    hist = np.fromiter(itertools.chain.from_iterable(r.history_item_ids or () for r in rows), np.int64,
                       int(lengths.sum()))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    has = np.fromiter((r.embedding is not None for r in rows), bool, n)
    emb = None
    if schema.content_dim is not None and has.any():
        lens = np.fromiter((len(r.embedding or ()) for r in rows), np.int64, n)
        values = np.fromiter(itertools.chain.from_iterable(r.embedding or () for r in rows), np.float64,
                             int(lens.sum()))
        try:
            emb = embedding_matrix(has, lens, values, schema.content_dim, "request", "embedding")
        except DataError as e:
            raise RequestError(str(e)) from None
    elif schema.content_dim is None:
        has[:] = False  # hashing needs no content: an embedding is ignored, as `semid score` ignores the column
    return Requests(item_id, watch, offsets, hist, day, first_day, emb, has)


def validation_message(e: ValidationError) -> str:
    """One line for the first error, naming the field as a user writes it (``requests[3].history_item_ids[1]``)."""
    err = e.errors(include_url=False)[0]
    loc, kind, given = err["loc"], err["type"], err.get("input")
    at = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    if kind == "json_invalid":
        return f"invalid JSON: {err.get('ctx', {}).get('error', err['msg'])}"
    if kind in ("model_type", "model_attributes_type", "dict_type") and not loc:
        return validation_message_for_body()
    if kind == "missing" and loc == ("requests",):
        return validation_message_for_body()
    if kind == "missing":
        return f"{at} is missing" + (" (every request names its candidate item)" if loc[-1] == "item_id" else "")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{at} must be an object, not {json_type(given)}"
    if len(loc) >= 4 and loc[2] == "embedding":  # an element of an embedding (loc ends in the union's member)
        return f"requests[{loc[1]}].embedding[{loc[3]}] must be a number, not {json_type(given)}"
    if kind == "list_type" and loc == ("requests",):
        return f"'requests' must be a non-empty list of objects, not {json_type(given)}"
    if kind == "extra_forbidden":
        fields = ", ".join(COLUMNS) if len(loc) > 1 else "requests, allow_unknown"
        return f"{at}: unknown field {loc[-1]!r} (fields: {fields})"
    if kind == "too_short" and loc == ("requests",):
        return "'requests' must be a non-empty list of objects"
    if kind == "too_long" and loc == ("requests",):
        return f"'requests' holds {len(given)} requests; at most {MAX_JSON_REQUESTS} per call"  # type: ignore[arg-type]
    if kind in ("int_type", "int_from_float") or (kind in ("greater_than_equal", "less_than_equal") and loc[-1] != "embedding"):
        if kind in ("greater_than_equal", "less_than_equal"):
            return f"{at} must be a non-negative 64-bit integer, not {given}"
        return f"{at} must be a non-negative integer, not {json_type(given)}"
    if kind == "bool_type":
        return f"{at} must be true or false, not {json_type(given)}"
    if kind == "list_type":
        what = "a list of numbers" if loc[-1] == "embedding" else "a list of item ids" if "history" in str(loc[-1]) \
            else "a list"
        return f"{at} must be {what}, not {json_type(given)}"
    return f"{at}: {err['msg']}" if at else err["msg"]


def validation_message_for_body() -> str:
    return ("the body must be a JSON object with a 'requests' list, e.g. "
            '{"requests": [{"item_id": 1, "watch_item_id": 2, "history_item_ids": [3]}]}')


def json_type(x: object) -> str:
    """How a JSON value's type reads in a message ("a string")."""
    return {type(None): "null", bool: "a boolean", str: "a string", float: "a float", int: "an integer",
            list: "a list", dict: "an object"}.get(type(x), type(x).__name__)


def encode_answer(model: str, tasks: tuple[str, ...] | list[str], probs: list[list[float]], logits: list[list[float]],
                  status: list[str], sid: list[list[int]] | None) -> bytes:
    """The ``ScoreAnswer`` as one line of JSON. Built with ``json.dumps`` on plain lists: validating 1,024 rows
    through the response model would cost more than the forward pass."""
    rows: list[dict[str, object]] = [
        {**{t: p for t, p in zip(tasks, pr)}, **{f"{t}_logit": x for t, x in zip(tasks, lr)}, "status": st}
        for pr, lr, st in zip(probs, logits, status)]
    if sid is not None:
        for row, s in zip(rows, sid):
            row["sid"] = s if s[0] >= 0 else None
    return (json.dumps({"model": model, "scores": rows}) + "\n").encode()
