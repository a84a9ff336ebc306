"""Browser login/logout (login is throttled after repeated failures)."""
from django.contrib.auth import views as auth_views
from django.urls import path

from portal.accounts.forms import ThrottledAuthenticationForm

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(authentication_form=ThrottledAuthenticationForm), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
