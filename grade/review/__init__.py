"""``grade review``: a local web page to see a grade before the render.

The page shows the reference still, the clip's shots, a before/after wipe of a shot with a scrubber
over its frames, scopes (waveform, RGB parade, vectorscope) of before, after and the reference, and
per-shot controls (mode, strength, reference); it renders the whole clip and saves presets.

* :mod:`grade.review.scopes`: the scopes, pure numpy;
* :mod:`grade.review.session`: what the page shows and does (shots, looks per shot), no web code, with
  :mod:`grade.review.jobs` (background work) and :mod:`grade.review.pictures` (blend, wipe);
* :mod:`grade.review.page`: the HTML;
* :mod:`grade.review.server`: the Starlette app (:func:`grade.review.server.make_app`), over
  :mod:`grade.review.queries` (what a request may carry);
* :mod:`grade.review.cli`: the ``grade review`` command.

Starlette and uvicorn (the ``review`` extra) are imported by :mod:`grade.review.server` and
:func:`grade.review.cli.run_review` only: the rest of ``grade`` imports without them.
"""
