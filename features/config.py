"""What the feature catalogue is configured with (the engine builds this from its settings)."""

from __future__ import annotations

from dataclasses import dataclass, field

from features.event import SECONDS_PER_DAY

DEFAULT_ENGAGEMENT_WEIGHTS: dict[str, float] = {
    "login": 1.0,
    "session": 1.0,
    "feature_used": 1.0,
    "purchase": 2.0,
    "page_view": 0.2,
    "app_click": 0.2,
    "campaign_response": 0.5,
}


@dataclass(frozen=True, slots=True)
class FeatureConfig:
    """Parameters of the standard catalogue.

    Windows are whole UTC days: "logins in the last 7 days" as of a moment counts the logins
    of that moment's UTC day and the 6 days before it. Events more than ``allowed_lateness``
    older than the newest event already seen for the customer are too late: they change no
    feature and are reported back to the caller (which dead-letters and counts them).
    """

    allowed_lateness_seconds: float = 3 * SECONDS_PER_DAY
    purchase_windows_days: tuple[int, ...] = (30, 90, 365)
    login_windows_days: tuple[int, ...] = (7, 14, 30)
    activity_window_days: int = 30
    engagement_half_life_days: float = 14.0
    engagement_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_ENGAGEMENT_WEIGHTS))
    key_features: tuple[str, ...] = ("payments", "budgeting", "alerts", "card_controls")
    products: tuple[str, ...] = ("mortgage", "credit_card", "savings", "current_account", "insurance")
    max_tracked_features: int = 64  # besides the key features, which are always tracked
    max_tracked_campaigns: int = 8
    max_external_scores: int = 16  # external models' scores kept per customer (oldest as_of goes)

    def __post_init__(self) -> None:
        for name, windows in (("purchase", self.purchase_windows_days), ("login", self.login_windows_days)):
            if not windows or any(w < 1 for w in windows):
                raise ValueError(f"{name} windows must be positive whole days, got {windows}")
        if self.activity_window_days < 1:
            raise ValueError("activity window must be at least 1 day")
        if self.engagement_half_life_days <= 0:
            raise ValueError("engagement half-life must be positive")
        if self.allowed_lateness_seconds < 0:
            raise ValueError("allowed lateness must not be negative")
        if self.max_tracked_features < 0:
            raise ValueError("max_tracked_features must not be negative")

    @property
    def purchase_horizon_days(self) -> int:
        """Days of purchase buckets kept: the longest purchase window."""
        return max(self.purchase_windows_days)

    @property
    def activity_horizon_days(self) -> int:
        """Days of login/session/ticket/call buckets kept."""
        return max((*self.login_windows_days, self.activity_window_days))
