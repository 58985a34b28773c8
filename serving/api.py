"""The HTTP API: endpoints, their schema (OpenAPI at ``/openapi.json``) and error mapping.

Every answer carries ids and display names. Errors are JSON ``{"detail": ...}``: an unknown id
or nothing published for it gives 404 with a message, a bad parameter 422, data not published
yet 503 (the radio before a transition model is published, too); an unexpected error is logged
and answered 500 without a trace.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated, Any, Literal

import orjson
from fastapi import FastAPI, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field

from serving.service import NoRadioModel, NotFound, NotReady, RecommendationService

logger = logging.getLogger(__name__)

API_VERSION = "1.0.0"
Kind = Literal["cf", "text", "audio", "cooccurrence"]
SearchType = Literal["all", "artist", "track"]
MAX_K = 100
MAX_RADIO_STEPS = 200
MAX_ID_LENGTH = 512

ItemId = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, examples=["t0000001"])]
ArtistId = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, examples=["a00001"])]
UserId = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, examples=["u000001"])]
K = Annotated[int, Query(ge=1, le=MAX_K, description="how many results")]


# ------------------------------------------------------------------------------------ schema
class ErrorMessage(BaseModel):
    detail: str = Field(description="what went wrong and what to do")


class PlaylistEntry(BaseModel):
    position: int
    item_id: str
    name: str
    artist_id: str | None
    artist_name: str | None
    score: float | None
    source: str | None = Field(description="the source or stage that placed it (ease, cf ...)")
    reason: str | None = Field(description="why it is recommended, in words")


class Playlist(BaseModel):
    user_id: str
    week_start: dt.date = Field(description="the Monday the playlist is for")
    weeks_available: list[dt.date]
    variant: str = Field(
        description="the A/B variant that served it (discover_weekly's variant column; the blend "
        "configuration for playlists exported before variants)"
    )
    models: dict[str, str | None] = Field(description="model and configuration versions")
    items: list[PlaylistEntry]


class SimilarEntry(BaseModel):
    id: str
    name: str
    artist_id: str | None
    artist_name: str | None
    score: float = Field(description="similarity, higher is closer (cosine for vectors)")
    reason: str | None = None


class Similar(BaseModel):
    id: str
    name: str
    level: Literal["item", "artist"]
    kind: Kind
    collection: str
    version: str
    items: list[SimilarEntry]


class Recommendation(BaseModel):
    item_id: str
    name: str
    artist_id: str | None
    artist_name: str | None
    score: float | None


class Recommendations(BaseModel):
    user_id: str
    method: Literal["cf", "popular"] = Field(
        description="cf: nearest items to the user's CF vector; popular: the user has none"
    )
    excluded_played: int = Field(description="items the user played, never recommended")
    collection: str
    version: str
    user_version: str | None
    items: list[Recommendation]


class RadioStep(BaseModel):
    position: int
    artist_id: str
    name: str
    reason: str = Field(description="why this artist follows the previous one, in words")
    kind: Literal["transition", "cluster", "popular"] = Field(
        description="transition: explorers made this very move; cluster: explorers moved "
        "between these corners (genres or top tags); popular: a much-listened artist there"
    )
    probability: float = Field(ge=0, le=1, description="the move's transition probability")


class Radio(BaseModel):
    artist_id: str
    name: str
    week: dt.date = Field(description="the week whose transition model drives the station")
    version: str = Field(description="the transition model's version")
    explorers: int = Field(description="exploratory users the model learnt from")
    window: int = Field(description="no artist repeats within this many steps")
    steps: list[RadioStep]


class SearchHit(BaseModel):
    id: str
    type: Literal["artist", "track"]
    name: str
    artist_id: str | None
    artist_name: str | None
    score: float = Field(ge=0, le=1, description="name match, 1 = exact")


class SearchResults(BaseModel):
    query: str
    type: SearchType
    results: list[SearchHit]


class CollectionInfo(BaseModel):
    collection: str
    version: str
    rows: int
    dim: int
    metric: str
    search: str = Field(description="hnsw (voyager), exact, milvus or table")
    source: str = Field(description="snapshot (published copy), milvus (server) or export")
    published_at: float
    loaded_at: float


class PlaylistInfo(BaseModel):
    weeks: list[dt.date]
    latest: dt.date | None
    users: int
    variant: str | None


class CatalogInfo(BaseModel):
    items: int
    artists: int
    users: int
    listens: int
    source: str
    loaded_at: float


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    api_version: str
    started_at: float
    kinds: list[Kind]
    collections: dict[str, CollectionInfo]
    playlists: PlaylistInfo
    models: dict[str, str | None]
    catalog: CatalogInfo | None
    indexing: list[str] = Field(description="HNSW indexes being built (searched exactly now)")
    problems: dict[str, str]


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, media_type="application/json")


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        404: "unknown id, or nothing published for it",
        501: "not implemented yet",
        503: "not published yet",
    }
    return {code: {"model": ErrorMessage, "description": text[code]} for code in codes}


# ------------------------------------------------------------------------------------- app
def create_app(service: RecommendationService) -> FastAPI:
    """The FastAPI application over a loaded :class:`RecommendationService`."""
    # FastAPIOffline serves Swagger UI and ReDoc's JS/CSS from the package: /docs reads offline
    app = FastAPIOffline(
        title="cratedigger recommendations",
        version=API_VERSION,
        description="Discover Weekly playlists, similar items and artists by embedding kind, "
        "recommendations, name search and the versions served. Read-only; every answer "
        "carries ids and display names.",
    )
    app.state.service = service

    async def answer(function: Any, *args: Any) -> Response:
        """In-memory snapshots answer in well under a millisecond: inline, on the event loop;
        a Milvus server is network I/O: in the thread pool. The answer is serialised with
        orjson as is (the response models document it; the schemathesis test checks that the
        answers conform) instead of being validated again per request."""
        if service.answers_in_memory:
            return json_response(function(*args))
        return json_response(await run_in_threadpool(function, *args))

    @app.exception_handler(NotFound)
    async def not_found(request: Request, error: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=404)

    @app.exception_handler(NoRadioModel)
    async def no_radio(request: Request, error: NoRadioModel) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=501)

    @app.exception_handler(NotReady)
    async def not_ready(request: Request, error: NotReady) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=503)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s", request.url.path)
        return JSONResponse(
            {"detail": f"internal error ({type(error).__name__}); it is logged"}, status_code=500
        )

    @app.get(
        "/users/{user_id}/discover-weekly",
        response_model=Playlist,
        responses=_errors(404, 503),
        summary="A user's Discover Weekly, with reasons and the variant",
        tags=["playlists"],
    )
    async def discover_weekly(
        user_id: UserId,
        week: Annotated[
            dt.date | None,
            Query(description="any day of the week wanted (YYYY-MM-DD); default the latest"),
        ] = None,
    ) -> Any:
        return await answer(service.discover_weekly, user_id, week)

    @app.get(
        "/items/{item_id}/similar",
        response_model=Similar,
        responses=_errors(404, 503),
        summary="Items similar to an item by embedding kind (the item itself excluded)",
        tags=["similar"],
    )
    async def similar_items(item_id: ItemId, kind: Kind = "cf", k: K = 10) -> Any:
        return await answer(service.similar, "item", item_id, kind, k)

    @app.get(
        "/artists/{artist_id}/similar",
        response_model=Similar,
        responses=_errors(404, 503),
        summary="Artists similar to an artist by embedding kind (the artist itself excluded)",
        tags=["similar"],
    )
    async def similar_artists(artist_id: ArtistId, kind: Kind = "text", k: K = 10) -> Any:
        return await answer(service.similar, "artist", artist_id, kind, k)

    @app.get(
        "/users/{user_id}/recommendations",
        response_model=Recommendations,
        responses=_errors(404, 503),
        summary="Recommendations for a user, never including what the user played",
        tags=["playlists"],
    )
    async def recommendations(user_id: UserId, k: K = 10) -> Any:
        return await answer(service.recommend, user_id, k)

    @app.get(
        "/artists/{artist_id}/radio",
        response_model=Radio,
        responses=_errors(404, 503),
        summary="A radio station from a seed artist: artists drifting along the moves of "
        "exploratory listeners, each with its reason (503 until a transition model exists)",
        tags=["playlists"],
    )
    async def radio(
        artist_id: ArtistId,
        steps: Annotated[int, Query(ge=1, le=MAX_RADIO_STEPS, description="artists")] = 20,
        seed: Annotated[int, Query(ge=0, le=2**31 - 1, description="seed of the draws")] = 0,
    ) -> Any:
        return await answer(service.radio, artist_id, steps, seed)

    @app.get(
        "/search",
        response_model=SearchResults,
        responses=_errors(503),
        summary="Artists and tracks by name, typos allowed; returns their ids",
        tags=["search"],
    )
    async def search(
        q: Annotated[str, Query(min_length=1, max_length=200, description="a name")],
        type: SearchType = "all",
        limit: Annotated[int, Query(ge=1, le=50)] = 10,
    ) -> Any:
        return json_response(await run_in_threadpool(service.search, q, type, limit))

    @app.get(
        "/health",
        response_model=Health,
        summary="Health and the versions of the models and collections served",
        tags=["health"],
    )
    async def health() -> Any:
        return json_response({"api_version": API_VERSION, **service.health()})

    return app
