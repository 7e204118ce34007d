"""Views for tests/relay/test_handler.py: one of each kind of response Django can give."""

from __future__ import annotations

import json

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.urls import path
from django.views.decorators.http import require_GET


async def plain(request):
    response = HttpResponse("hello \u2603", content_type="text/plain; charset=utf-8")
    response["X-Custom"] = "one"
    response.headers["Cache-Control"] = "no-store"
    return response


async def echo(request):
    return JsonResponse({
        "method": request.method,
        "path": request.path,
        "query": request.GET.dict(),
        "content_type": request.content_type,
        "length": len(request.body),
        "body": request.body.decode("latin-1"),
        "header": request.headers.get("X-Thing"),
        "host": request.get_host(),
        "scheme": request.scheme,
        "remote": request.META.get("REMOTE_ADDR"),
    }, status=201)


@require_GET
async def only_get(request):
    return HttpResponse("got")


async def boom(request):
    raise RuntimeError("the view failed")


async def cookies(request):
    response = HttpResponse(json.dumps(request.COOKIES), content_type="application/json")
    response.set_cookie("session", "abc", max_age=60, httponly=True, samesite="Lax")
    response.set_cookie("theme", "dark", path="/settings")
    response.delete_cookie("old")
    return response


async def stream(request):
    async def parts():
        for n in range(3):
            yield f"part {n}\n".encode()

    return StreamingHttpResponse(parts(), content_type="text/plain")


def sync_view(request):
    return HttpResponse(f"sync {request.method}", status=202)


async def go_elsewhere(request):
    return redirect("/plain")


async def empty(request):
    return HttpResponse(status=204)


urlpatterns = [
    path("plain", plain),
    path("echo", echo),
    path("only-get", only_get),
    path("boom", boom),
    path("cookies", cookies),
    path("stream", stream),
    path("sync", sync_view),
    path("redirect", go_elsewhere),
    path("empty", empty),
]
