"""Showing a result: slices and slice stacks, the 3D view, the HTML report, downloads and number formatting."""
