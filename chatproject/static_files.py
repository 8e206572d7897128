"""Static files served by the application itself, under any ASGI server.

With DEBUG on, Django's finders serve each app's `static/` folder as `runserver` would. With
DEBUG off, ServeStatic (WhiteNoise's ASGI successor) serves what `collectstatic` wrote to
STATIC_ROOT, in front of Django: a static request never enters Django's request machinery.
The files are hashed (`app.3f2a9c….js`), so they are cached for a year (`immutable`) and a
deploy changes their names rather than their contents; a gzip (and brotli, when the `brotli`
package is installed) copy of each is made once at collect time and chosen by Accept-Encoding.
Wrapping the ASGI application, not configuring a server, is what makes daphne, uvicorn or
granian serve the same files.
"""

import logging
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from servestatic import ServeStaticASGI
from servestatic.storage import CompressedManifestStaticFilesStorage

logger = logging.getLogger(__name__)

# A file whose name carries no hash (favicon.svg asked for by name, say) may change with the
# next deploy: caches keep it only this long.
UNHASHED_MAX_AGE_SECONDS = 60


class HashedCompressedStorage(CompressedManifestStaticFilesStorage):
    """collectstatic's storage: hashed names, compressed copies, and ES module imports
    rewritten to the hashed names too (`import … from "./socket.js"` in app.js), so a page
    never mixes a new module with an old one that a cache still holds."""

    support_js_module_import_aggregation = True


def with_static_files(application: Any) -> Any:
    """The HTTP application, serving static files in front of it."""
    if settings.DEBUG:
        return ASGIStaticFilesHandler(application)
    root = Path(settings.STATIC_ROOT)
    if not (root / "staticfiles.json").is_file():
        # The page would render (its links need the manifest, so it would fail loudly) but
        # say why here, once, where the operator looks.
        logger.error(
            "no collected static files in %s: run `python manage.py collectstatic --noinput`"
            " (with the same settings) before starting the server",
            root,
        )
    return ServeStaticASGI(
        application,
        root=root if root.is_dir() else None,
        prefix=settings.STATIC_URL,
        max_age=UNHASHED_MAX_AGE_SECONDS,
    )
