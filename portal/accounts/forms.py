"""Browser login form that honours the login throttle."""
from django import forms
from django.contrib.auth.forms import AuthenticationForm

from portal.accounts.throttle import LoginLocked, throttled_authenticate


class ThrottledAuthenticationForm(AuthenticationForm):
    def clean(self):
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username is not None and password:
            try:
                self.user_cache = throttled_authenticate(self.request, username, password)
            except LoginLocked as locked:
                raise forms.ValidationError(
                    f"Too many failed logins for this account from your address; try again in {locked.retry_after_seconds} seconds.",
                    code="locked",
                )
            if self.user_cache is None:
                raise self.get_invalid_login_error()
            self.confirm_login_allowed(self.user_cache)
        return self.cleaned_data
