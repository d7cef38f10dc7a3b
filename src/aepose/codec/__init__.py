"""The codec: training targets from keypoints, and poses from network outputs (aggregation,
grouping, refinement). No images, no files.
"""
