"""``faceprior serve``: an HTTP API (FastAPI on uvicorn) and a web page over the restorer.

:mod:`faceprior.service.options` what a request may ask; :mod:`faceprior.service.jobs` the queue,
the worker and the results; :mod:`faceprior.service.app` the endpoints and the page
(``page.html``, self-contained). Needs the ``faceprior[serve]`` extra.
"""
