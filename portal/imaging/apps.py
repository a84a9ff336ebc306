from django.apps import AppConfig


class ImagingConfig(AppConfig):
    name = "portal.imaging"
    label = "imaging"
    default_auto_field = "django.db.models.BigAutoField"
