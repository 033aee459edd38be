"""The API description every HTTP service can publish: operations are declared next to their
handlers (method, path, summary, parameters, body and answers, each schema taken from the pydantic
model or type that validates it), registered here, routed from here, and rendered as one
OpenAPI 3.1 document, so the document cannot drift from the code.

A service builds one `ApiRegistry`, `add`s each module's operations, adds `registry.routes()`
to its app and calls `serve_docs` for `/v1/openapi.json` and the offline `/docs` page.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from aiohttp import web
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from rwasync.platform.http import (
    PROBLEM_CONTENT_TYPE,
    Problem,
    bad_query,
    defer_continue,
    json_response,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Location = Literal["path", "query", "header"]

OPENAPI_VERSION: Final = "3.1.0"
COMPONENTS: Final = "#/components/schemas/{model}"

# What each problem status means in every API; an operation lists the ones it can answer.
PROBLEM_MEANINGS: Final[Mapping[int, str]] = {
    400: "malformed JSON, or a bad query parameter or header",
    401: "missing or invalid credentials",
    404: "not found (or another provider's)",
    405: "method not allowed on this path",
    408: "the body did not arrive in time",
    409: "a conflict: a request with this Idempotency-Key still in progress, an id in use, "
    "or a state that does not allow the call",
    410: "gone: what the cursor points after is no longer kept",
    413: "the body is larger than the limit",
    415: "the Content-Type is not accepted",
    422: "the document breaks the schema; `errors` lists each problem with a JSON pointer",
    429: "too many requests; wait `Retry-After` seconds",
    503: "a dependency is unavailable; retry after `Retry-After` seconds",
}
PROBLEM_HEADERS: Final[Mapping[int, tuple[str, ...]]] = {
    401: ("WWW-Authenticate",),
    405: ("Allow",),
    409: ("Retry-After",),
    429: ("Retry-After",),
    503: ("Retry-After",),
}
HEADER_SCHEMAS: Final[Mapping[str, dict[str, Any]]] = {
    "Retry-After": {"type": "string", "pattern": "^[0-9]+$"},
    "WWW-Authenticate": {"type": "string"},
    "Allow": {"type": "string"},
    "Location": {"type": "string"},
    "ETag": {"type": "string", "pattern": '^"[^"]*"$'},
    "Cache-Control": {"type": "string"},
}


class ProblemError(BaseModel):
    """A problem in the request body, at a JSON pointer."""

    pointer: str
    message: str


class ParameterError(BaseModel):
    """A problem with a query parameter or header, by name."""

    parameter: str
    message: str


class ProblemDocument(BaseModel):
    """RFC 9457 problem details, as every error is answered."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[ProblemError | ParameterError] | None = None


@dataclass(frozen=True)
class Param:
    """A path, query or header parameter; `schema` is the type that validates it. A query
    parameter is given at most once, unless `repeated` (every value counts)."""

    name: str
    location: Location
    schema: Any
    description: str = ""
    required: bool = False
    repeated: bool = False


@dataclass(frozen=True)
class Body:
    """A request body: the model (or type) it is validated with, and the accepted media types."""

    schema: Any
    media_types: tuple[str, ...] = ("application/json",)
    required: bool = True
    description: str = ""
    # The body is judged, not refused: any JSON document gets the success answer (a report on
    # it), so the document says "the schema, or anything", not a 4xx for the rest.
    judged: bool = False


@dataclass(frozen=True)
class Reply:
    """A successful answer: its status, meaning, body model (None: no body), headers and the
    body's media type."""

    status: int
    description: str
    model: Any = None
    headers: tuple[str, ...] = ()
    media_type: str = "application/json"


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    operation_id: str
    summary: str
    replies: tuple[Reply, ...]
    problems: tuple[int, ...] = ()
    params: tuple[Param, ...] = ()
    body: Body | None = None
    tag: str = ""
    description: str = ""
    # Security scheme names from the registry's schemes; empty: a public call.
    security: tuple[str, ...] = ()
    # What a problem status means for this call, where it says more than `PROBLEM_MEANINGS`.
    problem_meanings: tuple[tuple[int, str], ...] = ()


@dataclass
class ApiRegistry:
    title: str
    version: str
    description: str = ""
    # name -> OpenAPI security scheme object
    security_schemes: dict[str, dict[str, Any]] = field(default_factory=dict)
    operations: list[Operation] = field(default_factory=list)

    def add(self, operations: Iterable[Operation]) -> None:
        for operation in operations:
            if any(
                (o.method, o.path) == (operation.method, operation.path) for o in self.operations
            ):
                raise ValueError(f"{operation.method} {operation.path} is registered twice")
            self.operations.append(operation)

    def routes(self) -> list[web.RouteDef]:
        # A GET also answers HEAD (RFC 9110 9.3.2), as aiohttp's own `add_get` does.
        return [
            web.get(o.path, _query_checked(o), expect_handler=defer_continue)
            if o.method == "GET"
            else web.route(o.method, o.path, _query_checked(o), expect_handler=defer_continue)
            for o in self.operations
        ]

    def document(self) -> dict[str, Any]:
        return _document(self)

    def serve_docs(
        self,
        app: web.Application,
        *,
        openapi_path: str = "/v1/openapi.json",
        docs_path: str = "/docs",
    ) -> None:
        """`openapi_path` (the document) and `docs_path` (Swagger UI from a local package: the page
        works offline), both public."""
        body = json_body(self.document())

        async def openapi(_: web.Request) -> web.Response:
            return web.Response(body=body, content_type="application/json")

        page = _DOCS_PAGE.format(title=self.title, assets=f"{docs_path}/assets", spec=openapi_path)

        async def docs(_: web.Request) -> web.Response:
            return web.Response(text=page, content_type="text/html")

        # Swagger UI's built files by name, and a problem+json 404 for any other name (aiohttp's
        # static route answered an empty octet-stream 404, and a 403 for the folder itself).
        assets = _swagger_ui_assets()

        async def asset(request: web.Request) -> web.FileResponse:
            found = assets.get(request.match_info["name"])
            if found is None:
                raise Problem(404, "Not Found", f"no such resource: {request.path}")
            return web.FileResponse(found)

        app.router.add_get(openapi_path, openapi)
        app.router.add_get(docs_path, docs)
        app.router.add_get(f"{docs_path}/assets/{{name}}", asset)


# A query parameter's name as a problem quotes it: what a client can send is unbounded.
MAX_QUOTED_NAME: Final = 64


def _query_checked(o: Operation) -> Handler:
    """The operation's handler behind a check of the query: a parameter the operation does not
    declare, or a declared one given twice (unless `repeated`), is a 400 naming it (docs/api.md
    1.3), before anything else is read. Ignored, a misspelt parameter silently changed what the
    call did (`?cursor=` for the change feed's `since` read from its oldest entry), and of a
    repeated one only the first value counted."""
    declared = {p.name: p for p in o.params if p.location == "query"}
    taken = f"this call takes: {', '.join(declared)}" if declared else "this call takes none"
    handler = o.handler

    async def checked(request: web.Request) -> web.StreamResponse:
        query = request.query
        if query:
            for name in query:
                param = declared.get(name)
                if param is None:
                    raise bad_query(name[:MAX_QUOTED_NAME], f"unknown query parameter ({taken})")
                if not param.repeated and len(query.getall(name)) > 1:
                    raise bad_query(name, "is given more than once")
        return await handler(request)

    return checked


def json_body(document: Any) -> bytes:
    return json_response(document).body  # type: ignore[return-value]


def _swagger_ui_assets() -> dict[str, Path]:
    # The swagger-ui-py package ships Swagger UI's built files (one folder); only they are served.
    folder = Path(str(importlib.resources.files("swagger_ui") / "static"))
    return {path.name: path for path in folder.iterdir() if path.is_file()}


_DOCS_PAGE: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({{url: "{spec}", dom_id: "#swagger-ui"}});</script>
</body></html>
"""


# --- rendering ------------------------------------------------------------------------------------


def _is_model(schema: Any) -> bool:
    return isinstance(schema, type) and issubclass(schema, BaseModel)


def _document(registry: ApiRegistry) -> dict[str, Any]:
    models = {ProblemDocument}
    for o in registry.operations:
        models.update(r.model for r in o.replies if _is_model(r.model))
        if o.body is not None and _is_model(o.body.schema):
            models.add(o.body.schema)
    ordered = sorted(models, key=lambda m: m.__name__)
    refs, top = models_json_schema([(m, "validation") for m in ordered], ref_template=COMPONENTS)
    components: dict[str, Any] = dict(top.get("$defs", {}))
    ref_of = {model: refs[(model, "validation")] for model in ordered}

    def schema_of(schema: Any) -> dict[str, Any]:
        if _is_model(schema):
            return dict(ref_of[schema])
        return _type_schema(schema)

    paths: dict[str, dict[str, Any]] = {}
    for o in registry.operations:
        paths.setdefault(o.path, {})[o.method.lower()] = _operation(o, schema_of)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": registry.title,
            "version": registry.version,
            "description": registry.description,
        },
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": registry.security_schemes},
    }


def _operation(o: Operation, schema_of: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = {"operationId": o.operation_id, "summary": o.summary}
    if o.description:
        spec["description"] = o.description
    if o.tag:
        spec["tags"] = [o.tag]
    if o.params:
        spec["parameters"] = [
            {
                "name": p.name,
                "in": p.location,
                "required": p.required or p.location == "path",
                "schema": schema_of(p.schema),
                **({"description": p.description} if p.description else {}),
            }
            for p in o.params
        ]
    if o.body is not None:
        body_schema = schema_of(o.body.schema)
        if o.body.judged:
            body_schema = {
                "anyOf": [body_schema, {}],
                "description": "any JSON document; the answer says whether it is valid",
            }
        spec["requestBody"] = {
            "required": o.body.required,
            "content": {media: {"schema": body_schema} for media in o.body.media_types},
            **({"description": o.body.description} if o.body.description else {}),
        }
    responses: dict[str, Any] = {}
    for reply in o.replies:
        answer: dict[str, Any] = {"description": reply.description}
        if reply.model is not None:
            answer["content"] = {reply.media_type: {"schema": schema_of(reply.model)}}
        if reply.headers:
            answer["headers"] = _headers(reply.headers)
        responses[str(reply.status)] = answer
    # Every call refuses a query parameter it does not take, or one given twice (`_query_checked`).
    problems = {*o.problems, 400} | ({401, 429} if o.security else set())
    meanings = {**PROBLEM_MEANINGS, **dict(o.problem_meanings)}
    for status in sorted(problems):
        answer = {
            "description": meanings[status],
            "content": {PROBLEM_CONTENT_TYPE: {"schema": schema_of(ProblemDocument)}},
        }
        if status in PROBLEM_HEADERS:
            answer["headers"] = _headers(PROBLEM_HEADERS[status])
        responses[str(status)] = answer
    spec["responses"] = responses
    spec["security"] = [{name: []} for name in o.security]
    return spec


def _headers(names: Iterable[str]) -> dict[str, Any]:
    return {name: {"schema": HEADER_SCHEMAS.get(name, {"type": "string"})} for name in names}


def _type_schema(schema: Any) -> dict[str, Any]:
    """The JSON Schema of a type (or a literal JSON Schema given as a dict)."""
    if isinstance(schema, dict):
        return dict(schema)
    return TypeAdapter(schema).json_schema(mode="validation")
