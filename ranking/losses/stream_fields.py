"""Names of the delayed-feedback stream fields: one definition for the stream builder
(:mod:`pipelines.streams`, which writes them and documents each method's stream) and the
losses that read them (:mod:`ranking.losses.delayed_feedback`,
:mod:`ranking.losses.net_conversion`).

A *stream sample* is one training row, available from ``available_at``; an origin event (a
click) can enter the stream more than once: a *first copy*, then re-ingested *duplicates*.

* :data:`LABEL` -- the label as known at ``available_at`` (observed for a first copy, the
  corrected one for a duplicate).
* :data:`ELAPSED` -- seconds from the origin event to ``available_at``, so
  ``available_at - elapsed`` is the click time.
* :data:`IN_WINDOW` -- 1 if the delayed event (the conversion) fell inside the waiting window.
* :data:`IS_DUPLICATE` -- 1 for a re-ingested copy, 0 for the first copy.
* :data:`DELAYED_POSITIVE` -- 1 for a positive duplicate whose event came after the window (the
  click was a fake negative until then); implies ``label = 1`` and ``is_duplicate = 1``.
* :data:`DELAYED_REFUND` -- net-conversion stream only: 1 on the copy whose label a refund after
  the window turns from positive to negative.
* :data:`AVAILABLE_AT` -- epoch seconds from which the trainer may see the sample; nothing in a
  sample may depend on a later event.
"""

LABEL = "label"
ELAPSED = "elapsed"
IN_WINDOW = "in_window"
IS_DUPLICATE = "is_duplicate"
DELAYED_POSITIVE = "delayed_positive"
DELAYED_REFUND = "delayed_refund"
AVAILABLE_AT = "available_at"

STREAM_FIELDS = (LABEL, ELAPSED, IN_WINDOW, IS_DUPLICATE, DELAYED_POSITIVE, DELAYED_REFUND,
                 AVAILABLE_AT)
