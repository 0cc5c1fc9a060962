from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


ROLE_RANK = {Role.VIEWER: 1, Role.MEMBER: 2, Role.ADMIN: 3}


class BudgetPeriod(models.TextChoices):
    DAY = "day", "Day"
    MONTH = "month", "Month"


class KeyScope(models.TextChoices):
    """What a key may call: applications get inference keys; automation that manages the hub gets control keys."""

    INFERENCE = "inference", "Inference: /v1 only"
    CONTROL = "control", "Control: /api and /v1"


class UsageLimits(models.Model):
    """Limits shared by API keys and teams; empty means unlimited."""

    rpm = models.PositiveIntegerField(null=True, blank=True, help_text="Requests per minute.")
    tpm = models.PositiveIntegerField(null=True, blank=True, help_text="Tokens (prompt + completion) per minute.")
    max_concurrent = models.PositiveIntegerField(null=True, blank=True, help_text="Requests in flight at once.")
    token_budget = models.PositiveBigIntegerField(null=True, blank=True, help_text="Tokens per budget period.")
    budget_period = models.CharField(max_length=10, choices=BudgetPeriod.choices, default=BudgetPeriod.MONTH)

    class Meta:
        abstract = True

    def has_limits(self) -> bool:
        return any(value is not None for value in (self.rpm, self.tpm, self.max_concurrent, self.token_budget))


class Team(UsageLimits):
    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="teams")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="unique_team_membership")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"


class ApiKey(UsageLimits):
    """A key for /v1 (and, with the control scope, /api). The secret itself is never stored: only its hash."""

    name = models.CharField(max_length=100)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    team = models.ForeignKey(Team, on_delete=models.SET_NULL, null=True, blank=True, related_name="api_keys")
    prefix = models.CharField(max_length=16, db_index=True, editable=False)
    hashed_key = models.CharField(max_length=64, unique=True, editable=False)
    allowed_models = models.JSONField(
        default=list,
        blank=True,
        help_text="Model names this key may use; empty means every model.",
    )
    scope = models.CharField(
        max_length=10,
        choices=KeyScope.choices,
        default=KeyScope.INFERENCE,
        help_text="Inference keys call /v1 only; control keys also call the control API (/api).",
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())

    def is_usable(self) -> bool:
        return not self.is_revoked and not self.is_expired()

    @property
    def is_control(self) -> bool:
        return self.scope == KeyScope.CONTROL

    def allows_model(self, model_name: str) -> bool:
        return not self.allowed_models or model_name in self.allowed_models


class BudgetUsage(models.Model):
    """Tokens settled against a key's or a team's limits in one budget period: the durable count behind the
    fast limit store (``mlxhub/accounts/budgets.py``), so a restart or a second web process keeps it."""

    scope = models.CharField(max_length=40, help_text='"key:<id>" or "team:<id>".')
    period = models.CharField(max_length=8, help_text="UTC: YYYYMMDD for a day, YYYYMM for a month.")
    tokens = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "period"], name="unique_budget_usage")]
        verbose_name = "budget usage"
        verbose_name_plural = "budget usage"

    def __str__(self) -> str:
        return f"{self.scope} {self.period}: {self.tokens}"
