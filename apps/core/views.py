from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from apps.core.health import run_health_checks


@never_cache
@require_GET
async def healthz(request: HttpRequest) -> JsonResponse:
    results = await run_health_checks()
    failed = [result.name for result in results if not result.ok]
    body = {
        "status": "fail" if failed else "ok",
        "failed": failed,
        "checks": {
            result.name: {"ok": result.ok, "latency_ms": result.latency_ms}
            | ({"error": result.error} if result.error else {})
            for result in results
        },
    }
    return JsonResponse(body, status=503 if failed else 200)
