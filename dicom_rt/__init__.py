"""Plain DICOM-RT helpers shared by the portal, the fixtures and the workers (no Django):
image-grid geometry, RTSTRUCT rasterisation and writing, DICOM SEG / NIfTI conversion,
and compact contour payloads for the viewer.
"""
