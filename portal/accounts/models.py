"""Sites (institutions) and user profiles carrying a role and site memberships."""
from django.conf import settings
from django.db import models


class Site(models.Model):
    """An institution that owns cases (e.g. internal, external #1, external #2)."""

    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)

    class Meta:
        ordering = ["code"]

    def __str__(self):
        return self.name


class Role(models.TextChoices):
    ONCOLOGIST = "oncologist", "Radiation oncologist (rater)"
    COORDINATOR = "coordinator", "Study coordinator"
    TRAINEE = "trainee", "Trainee"
    ADMIN = "admin", "Administrator"
    WORKER = "worker", "Worker (machine account)"


class Profile(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.TRAINEE)
    sites = models.ManyToManyField(Site, blank=True, related_name="members")

    def __str__(self):
        return f"{self.user.username} ({self.role})"


class LoginFailure(models.Model):
    """Failed login attempts, for throttling by username and client address."""

    username = models.CharField(max_length=150, db_index=True)
    address = models.CharField(max_length=64, db_index=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)
