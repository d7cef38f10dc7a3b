"""What the command line and the Python one-liners run: each app uses pipeline/ and engine/ and
holds no copy of their logic.
"""
