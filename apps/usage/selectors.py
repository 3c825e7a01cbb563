"""Reads for the usage pages and the CSV export."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from apps.usage.models import UsageRecord

PALETTE = ["#1f6feb", "#1a7f37", "#9a6700", "#8250df", "#cf222e", "#0a7b83", "#6e7781"]


@dataclass
class Bar:
    x: int
    y: int
    width: int
    height: int
    color: str
    title: str


@dataclass
class Chart:
    width: int
    height: int
    bars: list[Bar] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)
    days: list[tuple[int, str]] = field(default_factory=list)
    peak: int = 0


def records(user_id: int | None, days: int = 30) -> QuerySet[UsageRecord]:
    since = timezone.now() - dt.timedelta(days=days)
    queryset = UsageRecord.objects.filter(created_at__gte=since)
    return queryset if user_id is None else queryset.filter(user_id=user_id)


def totals(queryset: QuerySet[UsageRecord]) -> dict[str, int]:
    result = queryset.aggregate(
        requests=Count("id"),
        errors=Count("id", filter=Q(status=UsageRecord.Status.ERROR)),
        input_tokens=Sum("input_tokens"),
        output_tokens=Sum("output_tokens"),
    )
    return {key: int(value or 0) for key, value in result.items()}


def by_model(queryset: QuerySet[UsageRecord]) -> list[Any]:
    return list(
        queryset.values("model")
        .annotate(
            requests=Count("id"),
            errors=Count("id", filter=Q(status=UsageRecord.Status.ERROR)),
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
        )
        .order_by("-requests", "model")
    )


def by_user(queryset: QuerySet[UsageRecord]) -> list[Any]:
    return list(
        queryset.values("user__github_login", "user__username")
        .annotate(
            requests=Count("id"),
            errors=Count("id", filter=Q(status=UsageRecord.Status.ERROR)),
            tokens=Sum("input_tokens") + Sum("output_tokens"),
        )
        .order_by("-requests")
    )


def daily_chart(queryset: QuerySet[UsageRecord], days: int = 30) -> Chart:
    """Tokens a day, stacked by model, as rectangles an SVG can draw (no script needed)."""
    rows = (
        queryset.annotate(day=TruncDate("created_at"))
        .values("day", "model")
        .annotate(tokens=Sum("input_tokens") + Sum("output_tokens"))
        .order_by("day")
    )
    today = timezone.localdate()
    first = today - dt.timedelta(days=days - 1)
    per_day: dict[dt.date, dict[str, int]] = {}
    model_totals: dict[str, int] = {}
    for row in rows:
        per_day.setdefault(row["day"], {})[row["model"]] = int(row["tokens"] or 0)
        model_totals[row["model"]] = model_totals.get(row["model"], 0) + int(row["tokens"] or 0)
    top = [model for model, _ in sorted(model_totals.items(), key=lambda item: -item[1])][:6]
    colors = {model: PALETTE[index] for index, model in enumerate(top)}
    chart = Chart(width=days * 20, height=160)
    chart.peak = max((sum(day.values()) for day in per_day.values()), default=0)
    chart.legend = [(model, colors[model]) for model in top]
    if len(model_totals) > len(top):
        chart.legend.append(("other models", PALETTE[-1]))
    for index in range(days):
        day = first + dt.timedelta(days=index)
        if index % 7 == 0:
            chart.days.append((index * 20, day.strftime("%b %d")))
        y = chart.height
        for model, tokens in sorted(per_day.get(day, {}).items()):
            if not tokens or not chart.peak:
                continue
            height = max(1, round(tokens / chart.peak * (chart.height - 10)))
            y -= height
            chart.bars.append(
                Bar(
                    x=index * 20 + 2,
                    y=y,
                    width=16,
                    height=height,
                    color=colors.get(model, PALETTE[-1]),
                    title=f"{day:%Y-%m-%d} {model}: {tokens:,} tokens",
                )
            )
    return chart


async def usage_by_key(user_id: int) -> dict[int, tuple[int, int]]:
    """Requests and tokens of each of the person's API keys, all time."""
    rows = (
        UsageRecord.objects.filter(user_id=user_id, api_key__isnull=False)
        .values("api_key_id")
        .annotate(requests=Count("id"), tokens=Sum("input_tokens") + Sum("output_tokens"))
    )
    return {
        int(row["api_key_id"]): (int(row["requests"]), int(row["tokens"] or 0))
        async for row in rows
    }
