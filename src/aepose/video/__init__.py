"""Frame sources: what the arguments name (sources), reading their frames (readers), and the
MP4 writer (writer)."""
