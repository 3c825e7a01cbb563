from __future__ import annotations

import csv
from collections.abc import Iterator

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render

from apps.accounts.views import admin_required
from apps.usage import selectors


def _page(request: HttpRequest, user_id: int | None, title: str) -> HttpResponse:
    queryset = selectors.records(user_id)
    return render(
        request,
        "usage/usage.html",
        {
            "title": title,
            "everyone": user_id is None,
            "totals": selectors.totals(queryset),
            "models": selectors.by_model(queryset),
            "people": selectors.by_user(queryset) if user_id is None else [],
            "chart": selectors.daily_chart(queryset),
        },
    )


@login_required
def usage(request: HttpRequest) -> HttpResponse:
    return _page(request, request.user.pk, "Your usage")


@admin_required
def usage_everyone(request: HttpRequest) -> HttpResponse:
    return _page(request, None, "Usage of everyone")


class _Echo:
    def write(self, value: str) -> str:
        return value


@login_required
def usage_csv(request: HttpRequest) -> StreamingHttpResponse:
    """The last 30 days as CSV; admins may ask for everyone's with ?all=1."""
    user = request.user
    everyone = request.GET.get("all") == "1" and getattr(user, "can_administer", False)
    queryset = (
        selectors.records(None if everyone else user.pk)
        .select_related("user")
        .order_by("created_at")
    )
    writer = csv.writer(_Echo())
    header = [
        "time",
        "person",
        "source",
        "model",
        "provider",
        "input_tokens",
        "output_tokens",
        "latency_ms",
        "first_token_ms",
        "status",
        "error",
    ]

    def rows() -> Iterator[str]:
        yield writer.writerow(header)
        for record in queryset.iterator():
            yield writer.writerow(
                [
                    record.created_at.isoformat(),
                    record.user.github_login or record.user.username,
                    record.source,
                    record.model,
                    record.provider,
                    record.input_tokens,
                    record.output_tokens,
                    record.latency_ms,
                    record.first_token_ms or "",
                    record.status,
                    record.error_code,
                ]
            )

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="chatsite-usage.csv"'
    return response
