"""Track IDs across video frames: PoseTracker and its configuration (``tracker``), the track
table and its motion model (``tracks``), pose similarity (``similarity``) and One-Euro
smoothing (``one_euro``)."""
