"""URLs and views for the Django session-engine tests (``ROOT_URLCONF`` in tests/django_settings.py)."""

from __future__ import annotations

from django.http import HttpRequest
from django.http import HttpResponse
from django.http import JsonResponse
from django.urls import path


def set_value(request: HttpRequest) -> HttpResponse:
    for key, value in request.GET.items():
        request.session[key] = value
    return HttpResponse("set")


def show(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"key": request.session.session_key, "data": dict(request.session.items())})


def untouched(request: HttpRequest) -> HttpResponse:
    return HttpResponse("no session")


def login(request: HttpRequest) -> HttpResponse:
    request.session.cycle_key()
    request.session["user"] = request.GET.get("user", "ada")
    return HttpResponse("logged in")


def logout(request: HttpRequest) -> HttpResponse:
    request.session.flush()
    return HttpResponse("logged out")


def expire(request: HttpRequest) -> HttpResponse:
    value = request.GET["seconds"]
    request.session.set_expiry(int(value))
    return HttpResponse("expiry set")


urlpatterns = [
    path("set", set_value),
    path("show", show),
    path("untouched", untouched),
    path("login", login),
    path("logout", logout),
    path("expire", expire),
]
