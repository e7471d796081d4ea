"""Conform an edit: every event of an EDL / FCP XML / OTIO timeline graded in one resumable job.

The edit model is at the centre (:mod:`grade.conform.edit`: :class:`Edit`, :class:`Event`); the stages
sit at its edges:

* :mod:`~grade.conform.edit` reads the edit (OpenTimelineIO and its CMX 3600 / FCP adapters);
* :mod:`~grade.conform.media` relinks each event to media in the ``--media`` folders (by source file,
  clip or reel name; source in/out located with the media's own start timecode);
* :mod:`~grade.conform.looks` gives each event its look and scene (looks file rules, ``LOOK:``
  comments, or the default look);
* :mod:`~grade.conform.job` keeps the job file (``conform-job.json``): each event's fingerprint and
  output, so a re-run skips events already done with the same inputs;
* :mod:`~grade.conform.plan` and :mod:`~grade.conform.run`: one look per scene, trained once on the key
  frames of its events and kept as a preset in the output folder; each event rendered
  (:mod:`~grade.conform.render`) as its own graded clip with handles;
* :mod:`~grade.conform.write` writes a new edit (same format, and ``.otio``) pointing at the graded
  clips with the same record timeline; :mod:`~grade.conform.assemble` renders the programme.

Every output is written to a temporary file and renamed when complete, and the job file is rewritten
atomically after each event, so an interrupted conform never leaves a half-written clip or an
inconsistent job.
"""

from __future__ import annotations

import sys
import types

from grade.conform.assemble import assemble
from grade.conform.edit import EDIT_SUFFIXES, Edit, Event, read_edit
from grade.conform.job import JOB_FILE, EventStatus, Job, fingerprint, load_job, output_name, save_job
from grade.conform.looks import LooksFile, Rule, SceneLook, read_looks, scene_of
from grade.conform.media import MEDIA_SUFFIXES, Media, MediaIndex
from grade.conform.plan import ConformReport, ConformSettings, EventReport, Planned, plan_events
from grade.conform.run import list_events, run_conform

__all__ = [
    "EDIT_SUFFIXES",
    "JOB_FILE",
    "MEDIA_SUFFIXES",
    "ConformReport",
    "ConformSettings",
    "Edit",
    "Event",
    "EventReport",
    "EventStatus",
    "Job",
    "LooksFile",
    "Media",
    "MediaIndex",
    "Planned",
    "Rule",
    "SceneLook",
    "assemble",
    "fingerprint",
    "list_events",
    "load_job",
    "output_name",
    "plan_events",
    "read_edit",
    "read_looks",
    "run_conform",
    "save_job",
    "scene_of",
]


class _CallableModule(types.ModuleType):
    """``grade.conform`` is both this package and the API's :func:`grade.api.conform`: importing the package
    makes it the top package's attribute ``conform``, so calling it must conform an edit."""

    def __call__(self, *args, **kwargs):
        from grade.api import conform

        return conform(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
