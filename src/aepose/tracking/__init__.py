"""Track IDs across video frames: PoseTracker and its configuration (``tracker``), the track
table and its motion model (``tracks``), pose similarity (``similarity``) and One-Euro
smoothing (``one_euro``); offline tracking of a whole video (``offline``, with ``links``:
tracklets linked across gaps, gaps filled)."""
