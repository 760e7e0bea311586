"""DICOMweb under ``/dicomweb``: QIDO-RS, WADO-RS and STOW-RS (PS3.18).

Every resource needs a login session or an API bearer token. All staff may
search and retrieve; storing needs a technician, veterinarian, radiologist
or administrator. Cross-origin browser access (an OHIF viewer served from
elsewhere) is allowed only for the origins in
``FETLOCK_DICOMWEB_CORS_ORIGINS``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Coroutine, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from pydicom.uid import UID, ExplicitVRLittleEndian
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from fetlock.audit import service as audit
from fetlock.auth.deps import ALL_STAFF, Principal, get_principal, require_roles
from fetlock.auth.models import Role
from fetlock.config import Settings
from fetlock.dicomweb import qido, stow, wado
from fetlock.dicomweb.json_model import encode
from fetlock.dicomweb.multipart import (
    MultipartError,
    OutgoingPart,
    new_boundary,
    parse_accept,
    parse_media_type,
    related_content_type,
    spool_parts,
    stream_multipart,
)
from fetlock.imaging.jobs import THUMBNAIL_SIZE, thumbnail_blob_key
from fetlock.imaging.rendering import (
    VIDEO_TRANSFER_SYNTAXES,
    RenderError,
    Window,
    render_frame,
    render_thumbnail,
)
from fetlock.imaging.study_models import Instance
from fetlock.jobs import codec_process
from fetlock.storage import BlobStore, get_blob_store
from fetlock.web.deps import get_database, get_db_session, get_settings
from fetlock.web.errors import DomainError, NotFound, ServiceUnavailable

logger = logging.getLogger(__name__)

DICOM_JSON = "application/dicom+json"
READERS = require_roles(*ALL_STAFF)
WRITERS = require_roles(Role.TECHNICIAN, Role.VETERINARIAN, Role.RADIOLOGIST)


# -- CORS and errors ------------------------------------------------------------


def _cors_headers(request: Request) -> dict[str, str]:
    settings: Settings = request.app.state.settings
    allowed = settings.dicomweb_cors_origin_list
    origin = request.headers.get("origin")
    if not origin or not allowed or (origin not in allowed and "*" not in allowed):
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Expose-Headers": "Content-Type, Content-Length, Warning",
        "Vary": "Origin",
    }


def _error_response(exc: Exception) -> Response:
    if isinstance(exc, DomainError):
        body: dict[str, Any] = {"detail": exc.message}
        if exc.field is not None:
            body["errors"] = [
                {"field": exc.field, "value": exc.value, "message": exc.message}
            ]
        return JSONResponse(body, status_code=exc.status_code)
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(
        {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
    )


class DicomwebRoute(APIRoute):
    """A route whose responses, errors included, carry the CORS headers.

    Errors are turned into responses here (the same JSON as the app's error
    handlers) so that a browser on an allowed origin can read them too.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                response = await handler(request)
            except (DomainError, StarletteHTTPException) as exc:
                response = _error_response(exc)
            response.headers.update(_cors_headers(request))
            return response

        return route


router = APIRouter(prefix="/dicomweb", tags=["DICOMweb"], route_class=DicomwebRoute)


@router.options("/{path:path}", include_in_schema=False)
def preflight(request: Request, path: str) -> Response:
    """Respond to a CORS preflight without a login, because browsers send none."""
    headers = _cors_headers(request)
    if headers:
        requested = request.headers.get("access-control-request-headers", "")
        headers.update(
            {
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": requested
                or "Authorization, Accept, Content-Type",
                "Access-Control-Max-Age": "600",
            }
        )
    return Response(status_code=204, headers=headers)


# -- shared helpers ---------------------------------------------------------


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/dicomweb"


def _blobs(settings: Settings = Depends(get_settings)) -> BlobStore:
    return get_blob_store(settings)


def _warning_headers(messages: Iterable[str]) -> list[tuple[str, str]]:
    """RFC 7234 5.5: one ``Warning: 299 <host>: "<text>"`` per message."""
    return [
        ("Warning", f'299 fetlock: "{m.replace(chr(34), chr(39))}"') for m in messages
    ]


def _json_response(
    payload: Any, warnings: Iterable[str] = (), status: int = 200
) -> Response:
    response = Response(encode(payload), status_code=status, media_type=DICOM_JSON)
    for name, value in _warning_headers(warnings):
        response.headers.append(name, value)
    return response


def _locate(
    db_session: Session,
    study: str,
    series: str | None = None,
    instance: str | None = None,
) -> list[wado.Located]:
    """Find the instances, then end the transaction before any slow work.

    On SQLite every transaction holds the write lock (BEGIN IMMEDIATE), so a
    rendering or a long download must not keep one open while modalities
    store images.
    """
    located = wado.find_instances(db_session, study, series, instance)
    db_session.commit()
    return located


def _audit_view(
    db_session: Session,
    principal: Principal,
    action: str,
    located: list[wado.Located],
) -> None:
    study = located[0].study
    audit.record(
        db_session,
        principal.actor,
        action,
        "imaging_study",
        study.id,
        horse_id=study.horse_id,
        detail={
            "study_instance_uid": study.study_instance_uid,
            "instances": len(located),
        },
    )
    db_session.commit()


# -- QIDO-RS ------------------------------------------------------------------


def _search(
    request: Request,
    db_session: Session,
    blobs: BlobStore,
    level: qido.Level,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> Response:
    accept = parse_accept(request.headers.get("accept"))
    if not any(
        m.type in (DICOM_JSON, "application/json", "*/*", "application/*")
        for m in accept
    ):
        raise wado.NotAcceptable(
            "QIDO-RS responses are only application/dicom+json; accept that type",
            field="Accept",
            value=request.headers.get("accept"),
        )
    try:
        query = qido.parse_query(
            level,
            request.query_params.multi_items(),
            study_uid=study_uid,
            series_uid=series_uid,
        )
        result = qido.search(
            db_session,
            query,
            base_url=base_url(request),
            read_header=qido.read_stored_header(blobs.open),
        )
    except qido.QueryError as exc:
        raise DomainError(str(exc), field=exc.field, value=exc.value) from exc
    db_session.commit()
    return _json_response(result.datasets, result.warnings)


@router.get("/studies", summary="QIDO-RS: search for studies")
def search_studies(
    request: Request,
    principal: Principal = Depends(READERS),
    db_session: Session = Depends(get_db_session, scope="function"),
    blobs: BlobStore = Depends(_blobs),
) -> Response:
    return _search(request, db_session, blobs, "study")


@router.get("/series", summary="QIDO-RS: search for series of all studies")
def search_all_series(
    request: Request,
    principal: Principal = Depends(READERS),
    db_session: Session = Depends(get_db_session, scope="function"),
    blobs: BlobStore = Depends(_blobs),
) -> Response:
    return _search(request, db_session, blobs, "series")


@router.get("/instances", summary="QIDO-RS: search for instances of all studies")
def search_all_instances(
    request: Request,
    principal: Principal = Depends(READERS),
    db_session: Session = Depends(get_db_session, scope="function"),
    blobs: BlobStore = Depends(_blobs),
) -> Response:
    return _search(request, db_session, blobs, "instance")


@router.get("/studies/{study}/series", summary="QIDO-RS: search a study's series")
def search_series(
    study: str,
    request: Request,
    principal: Principal = Depends(READERS),
    db_session: Session = Depends(get_db_session, scope="function"),
    blobs: BlobStore = Depends(_blobs),
) -> Response:
    return _search(request, db_session, blobs, "series", study)


@router.get("/studies/{study}/instances", summary="QIDO-RS: search a study's instances")
def search_study_instances(
    study: str,
    request: Request,
    principal: Principal = Depends(READERS),
    db_session: Session = Depends(get_db_session, scope="function"),
    blobs: BlobStore = Depends(_blobs),
) -> Response:
    return _search(request, db_session, blobs, "instance", study)


@router.get(
    "/studies/{study}/series/{series}/instances",
    summary="QIDO-RS: search a series' instances",
)
def search_series_instances(
    study: str,
    series: str,
    request: Request,
    principal: Principal = Depends(READERS),
    db_session: Session = Depends(get_db_session, scope="function"),
    blobs: BlobStore = Depends(_blobs),
) -> Response:
    return _search(request, db_session, blobs, "instance", study, series)


# -- WADO-RS: instances -------------------------------------------------------


def _retrieve(
    request: Request,
    db_session: Session,
    blobs: BlobStore,
    principal: Principal,
    located: list[wado.Located],
) -> Response:
    stored = {row.instance.transfer_syntax_uid for row in located}
    choice = wado.choose_instance_representation(
        parse_accept(request.headers.get("accept")), stored
    )
    _audit_view(db_session, principal, "imaging.study.retrieved", located)
    base = base_url(request)
    items = [
        (
            row.instance.blob_key,
            row.instance.transfer_syntax_uid,
            row.instance.size_bytes,
            qido.instance_url(base, row.instance, row.series, row.study),
        )
        for row in located
    ]

    def parts() -> Iterator[OutgoingPart]:
        for key, syntax, size, url in items:
            if choice.transcode and syntax != ExplicitVRLittleEndian:
                data = wado.transcode_to_explicit_little_endian(blobs, key)
                yield OutgoingPart(
                    wado.part_content_type("application/dicom", ExplicitVRLittleEndian),
                    [data],
                    location=url,
                    content_length=len(data),
                )
                continue
            # The stored bytes, unchanged; the part's Content-Type names their syntax.
            yield OutgoingPart(
                wado.part_content_type("application/dicom", syntax),
                blobs.iter_chunks(key),
                location=url,
                content_length=size,
            )

    boundary = new_boundary()
    return StreamingResponse(
        stream_multipart(parts(), boundary),
        media_type=related_content_type("application/dicom", boundary),
    )


@router.get("/studies/{study}", summary="WADO-RS: retrieve a study")
def retrieve_study(
    study: str,
    request: Request,
    principal: Principal = Depends(READERS),
    db_session: Session = Depends(get_db_session, scope="function"),
    blobs: BlobStore = Depends(_blobs),
) -> Response:
    located = _locate(db_session, study)
    return _retrieve(request, db_session, blobs, principal, located)


@router.get("/studies/{study}/series/{series}", summary="WADO-RS: retrieve a series")
def retrieve_series(
    study: str,
    series: str,
    request: Request,
    principal: Principal = Depends(READERS),
    db_session: Session = Depends(get_db_session, scope="function"),
    blobs: BlobStore = Depends(_blobs),
) -> Response:
    located = _locate(db_session, study, series)
    return _retrieve(request, db_session, blobs, principal, located)


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}",
    summary="WADO-RS: retrieve an instance",
)
def retrieve_instance(
    study: str,
    series: str,
    instance: str,
    request: Request,
    principal: Principal = Depends(READERS),
    db_session: Session = Depends(get_db_session, scope="function"),
    blobs: BlobStore = Depends(_blobs),
) -> Response:
    located = _locate(db_session, study, series, instance)
    return _retrieve(request, db_session, blobs, principal, located)


# -- WADO-RS: metadata ----------------------------------------------------------


def _metadata(
    request: Request,
    db_session: Session,
    blobs: BlobStore,
    principal: Principal,
    located: list[wado.Located],
    audited: bool,
) -> Response:
    accept = parse_accept(request.headers.get("accept"))
    if not any(
        m.type in (DICOM_JSON, "application/json", "*/*", "application/*")
        for m in accept
    ):
        raise wado.NotAcceptable(
            "metadata is available only as application/dicom+json; accept that type",
            field="Accept",
            value=request.headers.get("accept"),
        )
    if audited:
        _audit_view(db_session, principal, "imaging.study.viewed", located)
    db_session.commit()
    base = base_url(request)
    datasets = [
        wado.instance_metadata(
            blobs, row, qido.instance_url(base, row.instance, row.series, row.study)
        )
        for row in located
    ]
    return _json_response(datasets)


@router.get("/studies/{study}/metadata", summary="WADO-RS: a study's metadata")
def study_metadata(
    study: str,
    request: Request,
    principal: Principal = Depends(READERS),
    db_session: Session = Depends(get_db_session, scope="function"),
    blobs: BlobStore = Depends(_blobs),
) -> Response:
    located = _locate(db_session, study)
    return _metadata(request, db_session, blobs, principal, located, audited=True)


@router.get(
    "/studies/{study}/series/{series}/metadata",
    summary="WADO-RS: a series' metadata",
)
def series_metadata(
    study: str,
    series: str,
    request: Request,
    principal: Principal = Depends(READERS),
    db_session: Session = Depends(get_db_session, scope="function"),
    blobs: BlobStore = Depends(_blobs),
) -> Response:
    # Viewers fetch every series of a study one by one: audit the study
    # once, at its first series, rather than at each.
    located = _locate(db_session, study, series)
    first = _first_series_id(db_session, located[0].study.id)
    audited = first == located[0].series.id
    return _metadata(request, db_session, blobs, principal, located, audited)


def _first_series_id(db_session: Session, study_id: int) -> int | None:
    return db_session.execute(
        select(Instance.series_id)
        .where(Instance.study_id == study_id)
        .order_by(Instance.id)
        .limit(1)
    ).scalar_one_or_none()


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/metadata",
    summary="WADO-RS: an instance's metadata",
)
def instance_metadata(
    study: str,
    series: str,
    instance: str,
    request: Request,
    principal: Principal = Depends(READERS),
    db_session: Session = Depends(get_db_session, scope="function"),
    blobs: BlobStore = Depends(_blobs),
) -> Response:
    located = _locate(db_session, study, series, instance)
    return _metadata(request, db_session, blobs, principal, located, audited=False)


# -- WADO-RS: frames and bulk data --------------------------------------------


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
    summary="WADO-RS: retrieve frames",
)
def retrieve_frames(
    study: str,
    series: str,
    instance: str,
    frames: str,
    request: Request,
    principal: Principal = Depends(READERS),
    db_session: Session = Depends(get_db_session, scope="function"),
    blobs: BlobStore = Depends(_blobs),
) -> Response:
    row = _locate(db_session, study, series, instance)[0].instance
    if not row.is_image:
        raise NotFound(
            f"instance {instance} has no pixel data, so no frames; retrieve the "
            "instance itself",
            field="SOPInstanceUID",
            value=instance,
        )
    numbers = wado.parse_frame_list(frames, row.number_of_frames)
    syntax = row.transfer_syntax_uid
    if syntax in VIDEO_TRANSFER_SYNTAXES:
        raise wado.NotAcceptable(
            f"instance {instance} is a video ({UID(syntax).name}), which has no "
            "separate frames; retrieve the instance for the stream as stored, or "
            "/rendered for its first frame",
            field="frames",
            value=frames,
        )
    key = row.blob_key
    choice = wado.choose_frame_representation(
        parse_accept(request.headers.get("accept")),
        syntax,
        # A kept JPEG-LS copy (of lossless JPEG 2000 frames, say) serves a
        # client that prefers JPEG-LS as well as encoding native frames does.
        transcodable=wado.can_transcode_to_jpeg_ls(blobs, key, syntax)
        or wado.has_jpeg_ls_copies(blobs, key, numbers),
    )
    part_syntax = choice.part_syntax(syntax)
    content_type = wado.part_content_type(choice.media_type, part_syntax)

    # Get the first frame before the response starts, so that pixel data
    #   that cannot be decoded gives a status instead of a cut-off body.
    frame_data = wado.iter_frames(
        blobs, key, numbers, stored=choice.stored, transcode=choice.transcode
    )
    try:
        first = next(frame_data)
    except (RenderError, ValueError) as exc:
        logger.warning("frames of SOP Instance %s failed: %s", instance, exc)
        raise wado.NotAcceptable(
            f"frame {numbers[0]} of instance {instance} cannot be sent as "
            f"{choice.media_type} ({exc}); accept "
            '\'multipart/related; type="application/octet-stream"; '
            "transfer-syntax=*' for the stored bytes, or use /rendered",
            field="frames",
            value=frames,
        ) from exc

    def parts() -> Iterator[OutgoingPart]:
        yield OutgoingPart(content_type, [first], content_length=len(first))
        for data in frame_data:
            yield OutgoingPart(content_type, [data], content_length=len(data))

    boundary = new_boundary()
    return StreamingResponse(
        stream_multipart(parts(), boundary),
        media_type=related_content_type(
            choice.media_type, boundary, **{"transfer-syntax": part_syntax}
        ),
    )


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/bulkdata/{tag}",
    summary="WADO-RS: retrieve one bulk data value",
)
def retrieve_bulkdata(
    study: str,
    series: str,
    instance: str,
    tag: str,
    request: Request,
    principal: Principal = Depends(READERS),
    db_session: Session = Depends(get_db_session, scope="function"),
    blobs: BlobStore = Depends(_blobs),
) -> Response:
    row = _locate(db_session, study, series, instance)[0].instance
    try:
        number = int(tag, 16) if len(tag) == 8 else -1
    except ValueError:
        number = -1
    value = wado.bulk_value(blobs, row.blob_key, number) if number >= 0 else None
    if value is None:
        raise NotFound(
            f"instance {instance} has no bulk data element {tag!r}; use the "
            "BulkDataURI from its metadata",
            field="tag",
            value=tag,
        )
    boundary = new_boundary()
    part = OutgoingPart(
        wado.part_content_type("application/octet-stream", row.transfer_syntax_uid),
        [value],
        content_length=len(value),
    )
    return StreamingResponse(
        stream_multipart([part], boundary),
        media_type=related_content_type("application/octet-stream", boundary),
    )


# -- WADO-RS: rendered and thumbnail ------------------------------------------

ImageType = Literal["jpeg", "png"]


def _image_format(request: Request) -> ImageType:
    """Choose JPEG or PNG from the ``accept`` parameter or the Accept header."""
    requested = request.query_params.get("accept")
    ranges = (
        [parse_media_type(requested)]
        if requested
        else parse_accept(request.headers.get("accept"))
    )
    for media in ranges:
        if media.type in ("image/jpeg", "image/*", "*/*"):
            return "jpeg"
        if media.type == "image/png":
            return "png"
    raise wado.NotAcceptable(
        "rendered images are available as image/jpeg or image/png; accept one",
        field="Accept",
        value=requested or request.headers.get("accept"),
    )


def _window(request: Request) -> Window | None:
    """Parse ``window=center,width[,function]`` (PS3.18 8.3.5, rendered resources)."""
    text = request.query_params.get("window")
    if not text:
        return None
    pieces = [p.strip() for p in text.split(",")]
    try:
        center, width = float(pieces[0]), float(pieces[1])
        function = pieces[2].upper() if len(pieces) > 2 and pieces[2] else "LINEAR"
        return Window(center, width, function)
    except (ValueError, IndexError, RenderError) as exc:
        raise DomainError(
            f"window {text!r} is invalid ({exc}); use center,width[,function], "
            "e.g. window=40,400 or window=40,400,SIGMOID",
            field="window",
            value=text,
        ) from exc


def _viewport(request: Request, rows: int | None, columns: int | None) -> int | None:
    """Return the longer output side that fits ``viewport=vw,vh``."""
    text = request.query_params.get("viewport")
    if not text:
        return None
    try:
        width, height = (int(p) for p in text.split(",")[:2])
        if width < 16 or height < 16:
            raise ValueError("too small")
    except ValueError as exc:
        raise DomainError(
            f"viewport {text!r} is invalid ({exc}); use width,height in pixels, "
            "each at least 16, e.g. viewport=512,512",
            field="viewport",
            value=text,
        ) from exc
    if not rows or not columns:
        return min(width, height)
    scale = min(width / columns, height / rows)
    return max(16, min(4096, round(max(rows, columns) * scale)))


def _image_response(data: bytes, fmt: ImageType) -> Response:
    return Response(
        data,
        media_type=f"image/{fmt}",
        headers={"Cache-Control": "private, max-age=300"},
    )


def _render(
    blobs: BlobStore,
    row: Instance,
    frame: int,
    fmt: ImageType,
    window: Window | None,
    max_size: int | None,
) -> bytes:
    path = blobs.local_path(row.blob_key)
    try:
        if path is not None:
            # In the codec process: decoding a large JPEG 2000 holds the GIL
            # for seconds, which would stall every other request meanwhile.
            return codec_process.run(
                render_frame, path, frame, window=window, max_size=max_size, fmt=fmt
            )
        with blobs.open(row.blob_key) as stream:
            return render_frame(
                stream, frame, window=window, max_size=max_size, fmt=fmt
            )
    except RenderError as exc:
        raise DomainError(
            f"instance {row.sop_instance_uid} cannot be rendered: {exc}",
            field="SOPInstanceUID",
            value=row.sop_instance_uid,
        ) from exc
    except codec_process.CodecProcessDied as exc:
        raise _codec_failed(row, exc) from exc


def _codec_failed(row: Instance, exc: Exception) -> ServiceUnavailable:
    logger.warning("rendering instance %s failed: %s", row.sop_instance_uid, exc)
    return ServiceUnavailable(
        f"instance {row.sop_instance_uid} could not be rendered: {exc}; retry "
        "later, or open it in the viewer",
        field="SOPInstanceUID",
        value=row.sop_instance_uid,
    )


def _rendered_parts(
    request: Request, blobs: BlobStore, rows: list[Instance]
) -> Response:
    """Rendered study or series: one image part per instance (PS3.18 10.4)."""
    fmt = _image_format(request)
    window = _window(request)
    keys = [(r, _viewport(request, r.rows, r.columns)) for r in rows]

    def parts() -> Iterator[OutgoingPart]:
        for row, max_size in keys:
            data = _render(blobs, row, 0, fmt, window, max_size)
            yield OutgoingPart(f"image/{fmt}", [data], content_length=len(data))

    boundary = new_boundary()
    return StreamingResponse(
        stream_multipart(parts(), boundary),
        media_type=related_content_type(f"image/{fmt}", boundary),
    )


@router.get("/studies/{study}/rendered", summary="WADO-RS: render a study")
def rendered_study(
    study: str,
    request: Request,
    principal: Principal = Depends(READERS),
    db_session: Session = Depends(get_db_session, scope="function"),
    blobs: BlobStore = Depends(_blobs),
) -> Response:
    located = _locate(db_session, study)
    return _rendered_parts(request, blobs, [row.instance for row in located])


@router.get(
    "/studies/{study}/series/{series}/rendered", summary="WADO-RS: render a series"
)
def rendered_series(
    study: str,
    series: str,
    request: Request,
    principal: Principal = Depends(READERS),
    db_session: Session = Depends(get_db_session, scope="function"),
    blobs: BlobStore = Depends(_blobs),
) -> Response:
    located = _locate(db_session, study, series)
    return _rendered_parts(request, blobs, [row.instance for row in located])


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/rendered",
    summary="WADO-RS: render an instance (its first frame)",
)
def rendered_instance(
    study: str,
    series: str,
    instance: str,
    request: Request,
    principal: Principal = Depends(READERS),
    db_session: Session = Depends(get_db_session, scope="function"),
    blobs: BlobStore = Depends(_blobs),
) -> Response:
    row = _locate(db_session, study, series, instance)[0].instance
    fmt = _image_format(request)
    data = _render(
        blobs, row, 0, fmt, _window(request), _viewport(request, row.rows, row.columns)
    )
    return _image_response(data, fmt)


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/frames/{frame}/rendered",
    summary="WADO-RS: render one frame",
)
def rendered_frame(
    study: str,
    series: str,
    instance: str,
    frame: str,
    request: Request,
    principal: Principal = Depends(READERS),
    db_session: Session = Depends(get_db_session, scope="function"),
    blobs: BlobStore = Depends(_blobs),
) -> Response:
    row = _locate(db_session, study, series, instance)[0].instance
    (number,) = _single_frame(frame, row.number_of_frames)
    fmt = _image_format(request)
    data = _render(
        blobs,
        row,
        number - 1,
        fmt,
        _window(request),
        _viewport(request, row.rows, row.columns),
    )
    return _image_response(data, fmt)


def _single_frame(text: str, number_of_frames: int | None) -> list[int]:
    numbers = wado.parse_frame_list(text, number_of_frames)
    if len(numbers) != 1:
        raise DomainError(
            f"frame {text!r} must be a single frame number for rendering",
            field="frames",
            value=text,
        )
    return numbers


def _thumbnail(
    request: Request, blobs: BlobStore, study_uid: str, row: Instance
) -> Response:
    """Return the instance's thumbnail: the cached chart one, or rendered now."""
    fmt = _image_format(request)
    size = _viewport(request, row.rows, row.columns)
    cache_key = thumbnail_blob_key(study_uid, row.sop_instance_uid)
    if fmt == "jpeg" and size in (None, THUMBNAIL_SIZE) and blobs.exists(cache_key):
        with blobs.open(cache_key) as stream:
            return _image_response(stream.read(), fmt)
    path = blobs.local_path(row.blob_key)
    if path is not None:
        try:
            data = codec_process.run(render_thumbnail, path, size or THUMBNAIL_SIZE)
        except codec_process.CodecProcessDied as exc:
            raise _codec_failed(row, exc) from exc
    else:
        with blobs.open(row.blob_key) as stream:
            data = render_thumbnail(stream, size or THUMBNAIL_SIZE)
    if size in (None, THUMBNAIL_SIZE):
        # Kept where the chart thumbnail job would put it, so that the study
        # page's next visit does not decode the image again.
        blobs.put_bytes(cache_key, data)
    if fmt == "png":
        from io import BytesIO

        from PIL import Image

        out = BytesIO()
        Image.open(BytesIO(data)).save(out, format="PNG")
        data = out.getvalue()
    return _image_response(data, fmt)


def _representative(located: list[wado.Located]) -> wado.Located:
    """Return the first image in series and instance order, else the first object."""
    return next((row for row in located if row.instance.is_image), located[0])


@router.get("/studies/{study}/thumbnail", summary="WADO-RS: a study's thumbnail")
def study_thumbnail(
    study: str,
    request: Request,
    principal: Principal = Depends(READERS),
    db_session: Session = Depends(get_db_session, scope="function"),
    blobs: BlobStore = Depends(_blobs),
) -> Response:
    located = _locate(db_session, study)
    chart = located[0].study
    chosen = _representative(located).instance
    if chart.thumbnail_sop_instance_uid:
        chosen = next(
            (
                row.instance
                for row in located
                if row.instance.sop_instance_uid == chart.thumbnail_sop_instance_uid
            ),
            chosen,
        )
    return _thumbnail(request, blobs, study, chosen)


@router.get(
    "/studies/{study}/series/{series}/thumbnail",
    summary="WADO-RS: a series' thumbnail",
)
def series_thumbnail(
    study: str,
    series: str,
    request: Request,
    principal: Principal = Depends(READERS),
    db_session: Session = Depends(get_db_session, scope="function"),
    blobs: BlobStore = Depends(_blobs),
) -> Response:
    located = _locate(db_session, study, series)
    return _thumbnail(request, blobs, study, _representative(located).instance)


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/thumbnail",
    summary="WADO-RS: an instance's thumbnail",
)
def instance_thumbnail(
    study: str,
    series: str,
    instance: str,
    request: Request,
    principal: Principal = Depends(READERS),
    db_session: Session = Depends(get_db_session, scope="function"),
    blobs: BlobStore = Depends(_blobs),
) -> Response:
    row = _locate(db_session, study, series, instance)[0].instance
    return _thumbnail(request, blobs, study, row)


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/frames/{frame}/thumbnail",
    summary="WADO-RS: one frame's thumbnail",
)
def frame_thumbnail(
    study: str,
    series: str,
    instance: str,
    frame: str,
    request: Request,
    principal: Principal = Depends(READERS),
    db_session: Session = Depends(get_db_session, scope="function"),
    blobs: BlobStore = Depends(_blobs),
) -> Response:
    row = _locate(db_session, study, series, instance)[0].instance
    (number,) = _single_frame(frame, row.number_of_frames)
    fmt = _image_format(request)
    size = _viewport(request, row.rows, row.columns) or THUMBNAIL_SIZE
    return _image_response(_render(blobs, row, number - 1, fmt, None, size), fmt)


# -- STOW-RS --------------------------------------------------------------------


def _check_stow_media_type(request: Request) -> str:
    """Return the boundary of an acceptable STOW-RS request (PS3.18 10.5.1.1)."""
    header = request.headers.get("content-type", "")
    media = parse_media_type(header)
    part_type = media.params.get("type", "").lower()
    if media.type != "multipart/related" or part_type != stow.DICOM_MEDIA_TYPE:
        raise _UnsupportedMediaType(
            f"Content-Type {header!r} is not supported; send "
            "'multipart/related; type=\"application/dicom\"; boundary=...' with "
            "one PS3.10 file per part",
            field="Content-Type",
            value=header,
        )
    boundary = media.params.get("boundary")
    if not boundary:
        raise DomainError(
            "Content-Type has no boundary parameter; add boundary=<the "
            "delimiter used in the body>",
            field="Content-Type",
            value=header,
        )
    return boundary


class _UnsupportedMediaType(DomainError):
    status_code = 415


async def _store(
    request: Request, principal: Principal, study_uid: str | None
) -> Response:
    boundary = _check_stow_media_type(request)
    settings: Settings = request.app.state.settings
    spool_root = settings.data_dir / "tmp"
    spool_root.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="stow-", dir=spool_root))
    try:
        try:
            parts = await spool_parts(
                request.stream(),
                boundary,
                directory,
                max_bytes=settings.dicomweb_max_upload_bytes,
            )
        except MultipartError as exc:
            raise DomainError(str(exc), field="body", value=None) from exc
        if not parts:
            raise DomainError(
                "the request has no parts; send at least one application/dicom part",
                field="body",
                value=None,
            )
        result = await run_in_threadpool(
            stow.store_parts,
            get_database(request),
            parts,
            blobs=get_blob_store(settings),
            actor=principal.actor,
            base_url=base_url(request),
            study_uid=study_uid,
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    logger.info(
        "STOW-RS from %s: %d stored, %d failed",
        principal.user.username,
        sum(o.ok for o in result.outcomes),
        sum(not o.ok for o in result.outcomes),
    )
    return _json_response(result.body, result.warnings[:20], result.status_code)


async def stow_principal(request: Request) -> Principal:
    """Authenticate in a short transaction, then check the role.

    The usual request-scoped session would stay open for the whole upload;
    on SQLite its transaction holds the write lock, which ingest needs.
    """
    with get_database(request).session() as db_session:
        principal = get_principal(request, db_session)
        return await WRITERS(request, principal, db_session)


@router.post("/studies", summary="STOW-RS: store instances")
async def store_instances(
    request: Request, principal: Principal = Depends(stow_principal)
) -> Response:
    return await _store(request, principal, None)


@router.post("/studies/{study}", summary="STOW-RS: store instances of one study")
async def store_study_instances(
    study: str, request: Request, principal: Principal = Depends(stow_principal)
) -> Response:
    return await _store(request, principal, study)
