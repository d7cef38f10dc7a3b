"""From images to poses: the streamed stage engine, Pose, the Predictor, drawing, and the one
driver from sources to results.
"""
