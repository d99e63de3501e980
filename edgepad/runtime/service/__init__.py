"""``edgepad serve``: a local HTTP/JSON service over the liveness runtime, plus the installer's live view.

Standard library only (``http.server``); ``cv2`` encodes preview images and ``cryptography`` checks signed
manifests, both imported on first use. Modules (docs/SERVICE.md):

* ``config``: :class:`ServiceConfig`, :func:`is_loopback`, :func:`read_token_file`.
* ``hub``: :class:`DecisionHub`, :class:`Update`, :class:`Published`, :class:`PublishedEvent`, :class:`ProducerThread`,
  :class:`PipelineProducer`.
* ``preview``: :func:`face_boxes`, :func:`render_preview`, :func:`encode_image`, :func:`face_crops_for_audit`.
* ``http``: the request handler, the TCP / Unix-socket servers, :class:`HttpError`.
* ``security``: every check that admits or refuses a start, a connection or a request.
* ``app``: :class:`LivenessService` (the endpoints) and :func:`run_service` (:class:`ServeOptions` in).
"""
from edgepad.runtime.service.app import (API_VERSION, STATIC_DIR, AuditOptions, LivenessService, ServeOptions,
                                         run_service)
from edgepad.runtime.service.config import ServiceConfig, is_loopback, read_token_file
from edgepad.runtime.service.http import HttpError
from edgepad.runtime.service.hub import (DecisionHub, PipelineProducer, ProducerThread, Published, PublishedEvent,
                                         Update)
from edgepad.runtime.service.preview import encode_image, face_boxes, face_crops_for_audit, render_preview

__all__ = [
    "API_VERSION", "STATIC_DIR", "AuditOptions", "DecisionHub", "HttpError", "LivenessService", "PipelineProducer",
    "ProducerThread", "Published", "PublishedEvent", "ServeOptions", "ServiceConfig", "Update", "encode_image", "face_boxes",
    "face_crops_for_audit", "is_loopback", "read_token_file", "render_preview", "run_service",
]
