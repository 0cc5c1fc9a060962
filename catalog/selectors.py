from __future__ import annotations

from django.db.models import QuerySet

from catalog.models import Profile


def profiles_servable() -> QuerySet[Profile]:
    return Profile.objects.select_related("local_model").filter(enabled=True).order_by("name")


async def profile_for_model_name(*, name: str) -> Profile | None:
    return await profiles_servable().filter(name=name).afirst()
