"""Data: dataset parsers into one table, the generated demo dataset, its layouts and its video.
Imports only from ``core``.
"""
