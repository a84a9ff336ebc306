"""Admin for sites, profiles and login failures."""
from django.contrib import admin

from portal.accounts.models import LoginFailure, Profile, Site


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin):
    list_display = ["code", "name"]


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ["user", "role"]
    list_filter = ["role", "sites"]
    filter_horizontal = ["sites"]


@admin.register(LoginFailure)
class LoginFailureAdmin(admin.ModelAdmin):
    list_display = ["username", "address", "at"]
