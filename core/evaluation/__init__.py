"""Measuring a result: metrics against a reference, the lesion table, surfaces and distances in mm."""
