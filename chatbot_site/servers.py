"""What the ASGI servers need from us beyond ``application``.

daphne serves the API on Twisted's HTTP server, and Twisted's ``Request`` parses every POST body
that says ``multipart/form-data`` (or form-urlencoded) itself, with the ``email`` package, before
daphne hands the body to Django (twisted/twisted#4519, #5511): a 40 MB upload cost ~490 MB of
memory and ~1.3 s on the reactor thread, during which no other request or stream of the process
was served, and a body that parser rejects got a bare ``400`` with no envelope. Django parses the
body again anyway, streaming and within its limits, so Twisted's copy is pure cost.
:func:`daphne_leaves_bodies_to_django` turns it off (Twisted's own ``parsePOSTFormSubmission``).
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

from django.core.exceptions import ImproperlyConfigured


def daphne_leaves_bodies_to_django() -> None:
    """Make daphne build its requests with Twisted's form parsing off. Idempotent.

    daphne's ``HTTPFactory.buildProtocol`` looks ``WebRequest`` up in its module for every
    connection, and its command line imports the application (this package's ``asgi``) before
    it listens, so replacing the module's class here covers every request it serves.
    """
    from daphne import http_protocol
    from twisted.web.http import Request

    if getattr(http_protocol.WebRequest, "leaves_bodies_to_django", False):
        return
    if "parsePOSTFormSubmission" not in inspect.signature(Request.__init__).parameters:
        raise ImproperlyConfigured("This Twisted cannot leave form bodies to Django: upgrade it.")

    class WebRequest(http_protocol.WebRequest):
        leaves_bodies_to_django = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["parsePOSTFormSubmission"] = False
            super().__init__(*args, **kwargs)

    http_protocol.WebRequest = WebRequest


def prepare_server() -> None:
    """Called by ``asgi.py``: adjusts whichever server imported us (only daphne needs it)."""
    if "daphne" in sys.modules:
        daphne_leaves_bodies_to_django()
