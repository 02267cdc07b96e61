"""The bottom layer: settings, masking of personal data, dates, fault points.

Imports nothing of ours; every other package may import it.
"""
