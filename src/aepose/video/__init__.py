"""Frame sources (files, folders, globs, videos, sequences, streams) and the MP4 writer."""
