"""Content negotiation that never refuses: the API speaks JSON (and the schema view YAML too).

DRF answers ``406`` to an ``Accept`` header, or a ``?format=``, that names nothing a view
renders, and it does so before authentication: a request with no credentials got a 406 where
the contract says 401, and a keyed one lost its ``RateLimit-*`` headers. The contract has no
406, so such a request gets the view's first representation (JSON), as most HTTP APIs answer.
"""

from __future__ import annotations

from typing import Any

from django.http import Http404
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation


class FirstRendererWhenNoneFits(DefaultContentNegotiation):
    def select_renderer(
        self, request: Any, renderers: Any, format_suffix: Any = None
    ) -> tuple[Any, str]:
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except (NotAcceptable, Http404):  # Http404: an unknown ?format=
            return renderers[0], renderers[0].media_type
