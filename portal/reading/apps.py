from django.apps import AppConfig


class ReadingConfig(AppConfig):
    name = "portal.reading"
    label = "reading"
    default_auto_field = "django.db.models.BigAutoField"
