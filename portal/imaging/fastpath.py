"""Fast ASGI path for DICOMweb frames and bulk data (placeholder: passes through)."""


def wrap_http(django_app):
    return django_app
