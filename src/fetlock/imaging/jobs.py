"""Jobs that follow ingest: the study thumbnail and the settled-study check."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from fetlock.audit.service import Actor
from fetlock.billing import hooks as billing_hooks
from fetlock.db.base import utcnow
from fetlock.imaging.ingest import SETTLE_DELAY_S
from fetlock.imaging.study_models import Instance, Series, Study
from fetlock.jobs import JobContext, codec_process, enqueue, job
from fetlock.storage import BlobStore

logger = logging.getLogger(__name__)

# Longer side of the chart thumbnail, in pixels.
THUMBNAIL_SIZE = 256


def thumbnail_blob_key(study_instance_uid: str, sop_instance_uid: str) -> str:
    return f"thumbnails/{study_instance_uid}/{sop_instance_uid}.jpg"


def representative_instance(db_session: Session, study_id: int) -> Instance | None:
    """Return the study's first image: lowest series, then instance number."""
    return (
        db_session.execute(
            select(Instance)
            .join(Series, Series.id == Instance.series_id)
            .where(Instance.study_id == study_id, Instance.rows.is_not(None))
            .order_by(
                Series.series_number.is_(None),
                Series.series_number,
                Instance.instance_number.is_(None),
                Instance.instance_number,
                Instance.id,
            )
            .limit(1)
        )
        .scalars()
        .first()
    )


@job("thumbnail")
def make_thumbnail(ctx: JobContext, *, study_id: int) -> None:
    """Render the study's representative thumbnail into the blob store."""
    from fetlock.imaging.rendering import render_thumbnail

    # Read in a short transaction: rendering takes a while and must not hold
    # the SQLite write lock.
    with ctx.database.session() as read_session:
        study = read_session.get(Study, study_id)
        if study is None or study.thumbnail_blob_key is not None:
            return
        instance = representative_instance(read_session, study_id)
        if instance is None:
            return
        study_uid, sop_uid = study.study_instance_uid, instance.sop_instance_uid
        source_key = instance.blob_key

    path = ctx.blobs.local_path(source_key)
    if path is not None:
        data = codec_process.run(render_thumbnail, path, THUMBNAIL_SIZE)
    else:
        with ctx.blobs.open(source_key) as stream:
            data = render_thumbnail(stream, THUMBNAIL_SIZE)
    key = thumbnail_blob_key(study_uid, sop_uid)
    ctx.blobs.put_bytes(key, data)

    study = ctx.db_session.get(Study, study_id)
    if study is not None and study.thumbnail_blob_key is None:
        study.thumbnail_blob_key = key
        study.thumbnail_sop_instance_uid = sop_uid


@job("study_settled")
def study_settled(ctx: JobContext, *, study_id: int) -> None:
    """Tell billing that a linked study's images have arrived.

    Runs once no image has arrived for ``SETTLE_DELAY_S`` (it puts itself
    back in the queue while they still do), and again if more images come
    later. The billing hook counts views, so each call reflects the study as
    it is then.
    """
    study = ctx.db_session.get(Study, study_id)
    if study is None:
        return
    quiet_s = (utcnow() - study.last_received_at).total_seconds()
    if quiet_s < SETTLE_DELAY_S:
        # Images are still arriving (ingest enqueues this only now and then).
        enqueue(
            ctx.db_session,
            "study_settled",
            delay_s=SETTLE_DELAY_S - quiet_s,
            study_id=study_id,
        )
        return
    enqueue(ctx.db_session, "viewer_frames", study_id=study_id)
    if study.order_id is None:
        return
    ae_title = study.source_ae_title
    actor = Actor(
        name=f"dicom:{ae_title}" if ae_title else "ingest",
        source_ae_title=ae_title,
    )
    billing_hooks.on_study_received(ctx.db_session, study, actor)


@job("viewer_frames")
def prepare_viewer_frames(ctx: JobContext, *, study_id: int) -> None:
    """Keep JPEG-LS copies of the study's single-frame images.

    The browser viewer asks for frames as JPEG-LS first. Made here, once the
    study has settled, the copy of an uncompressed image is ready before the
    first viewer asks for it, and grey lossless JPEG 2000 images get one too,
    since the browser decodes JPEG-LS several times faster
    (``wado.can_keep_jpeg_ls_copy``). Uncompressed multi-frame images are
    encoded frame by frame when first viewed.
    """
    from fetlock.dicomweb import wado

    with ctx.database.session() as read_session:
        candidates = read_session.execute(
            select(Instance.blob_key, Instance.transfer_syntax_uid).where(
                Instance.study_id == study_id,
                Instance.rows.is_not(None),
                (Instance.number_of_frames.is_(None))
                | (Instance.number_of_frames == 1),
            )
        ).all()
    prepared = 0
    for blob_key, syntax in candidates:
        if ctx.stopping():
            # Copies already kept are skipped when the job runs again.
            enqueue(ctx.db_session, "viewer_frames", study_id=study_id)
            logger.info("Fetlock is stopping; study %d's copies resume later", study_id)
            break
        if ctx.blobs.exists(wado.jpeg_ls_frame_key(blob_key, 1)):
            continue
        try:
            prepared += codec_process.run(
                _keep_first_frame, ctx.blobs, blob_key, syntax
            )
        except Exception:
            # Pixel data that does not match its header, or a codec that
            # crashed on it twice. The viewer gets the error when it requests
            # this frame, and the other images go on.
            logger.warning(
                "no JPEG-LS copy of %s in study %d", blob_key, study_id, exc_info=True
            )
    if prepared:
        logger.info("kept JPEG-LS copies of %d images of study %d", prepared, study_id)


def _keep_first_frame(blobs: BlobStore, blob_key: str, syntax: str) -> bool:
    """Keep a JPEG-LS copy of frame 1 if the image qualifies; runs in the child."""
    from fetlock.dicomweb import wado

    if not wado.can_keep_jpeg_ls_copy(blobs, blob_key, syntax):
        return False
    return wado.keep_jpeg_ls_frame(blobs, blob_key, 1)
