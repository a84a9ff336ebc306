"""ContextRT portal: the Django project (settings, ASGI, URLs) and its apps.

Apps: ``accounts`` (users, roles, sites), ``imaging`` (DICOM store, ingest,
DICOMweb, export), ``cases`` (cases, versioned clinical context, cohorts),
``jobs`` (jobs and websocket consumers), ``reading`` (blinded scoring).
"""
