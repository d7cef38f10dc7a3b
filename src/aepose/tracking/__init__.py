"""Track IDs across video frames: PoseTracker and its configuration."""
