"""The step previews of a running job: fetched one at a time, shown while it still runs."""

from __future__ import annotations

import logging
from typing import Any, Callable

from .client import Client
from .pixels import decode_image
from .session import GENERATING, Session

log = logging.getLogger(__name__)


def fetch(
    client: Client,
    session: Session,
    url: str,
    is_active: Callable[[Session], bool],
    emit: Callable[[Any], None],
) -> None:
    """Fetch the PNG at ``url`` (a progress event's ``preview_url``) unless one is on its way
    for ``session``, then ``emit(QImage)`` if the job still runs and ``is_active(session)`` (its
    document is the one shown). A failed fetch or an undecodable image shows nothing."""
    if session.preview_fetching:
        return
    session.preview_fetching = True

    def arrived(data: bytes) -> None:
        session.preview_fetching = False
        if data and session.state == GENERATING and is_active(session):
            try:
                emit(decode_image(data))
            except ValueError:
                log.debug("preview image could not be decoded")

    client.fetch(url, arrived, lambda _error: arrived(b""))
