"""Standard suggestions for the shipped rules' segments, for a brief whose segment has no action.

They are the usual RFM and lifecycle playbook, not something segflow measured: a brief shows
them as such, and shows the measured lift instead whenever the segment has an ``on_enter``
action with outcomes.
"""

from __future__ import annotations

PLAYBOOK: dict[tuple[str, str], str] = {
    (
        "rfm",
        "Champions",
    ): "Reward them: early access, perks, ask for referrals and reviews; no discount needed.",
    ("rfm", "Loyal Customers"): "Upsell higher-value products; invite them to the loyalty programme.",
    ("rfm", "Potential Loyalists"): "Offer membership or loyalty benefits; recommend related products.",
    ("rfm", "New Customers"): "Onboard them: a welcome series that gets them to a second purchase.",
    ("rfm", "Promising"): "Build the habit: show what others buy next, a time-limited trial.",
    ("rfm", "Need Attention"): "Limited-time offers based on what they bought; reactivate before they slip.",
    ("rfm", "About to Sleep"): "Reconnect with popular products and a renewed offer.",
    ("rfm", "At Risk"): "Personal win-back messages with useful content; renewals and reminders.",
    ("rfm", "Can't Lose Them"): "Win them back personally: ask what changed; a strong offer pays here.",
    ("rfm", "Hibernating"): "Offer other relevant products and special prices; recreate the brand's value.",
    ("rfm", "Lost"): "One revival campaign at low cost; otherwise stop spending on them.",
    ("lifecycle", "new"): "Onboarding: first-value guidance and the key features.",
    ("lifecycle", "active"): "Cross-sell and referral asks while they are engaged.",
    ("lifecycle", "lapsing"): "A reminder of value before they churn (see the win-back experiment).",
    ("lifecycle", "churned"): "Win-back campaign; measure it against a holdout.",
    ("churn_risk", "Likely to Churn"): "Retention outreach: the win-back email and in-app message.",
    ("next_best_action", "Service Recovery"): "Resolve the open issue first; no marketing until it is fixed.",
    ("next_best_action", "Retain High-Value Depositor"): "Relationship manager call; rate or fee review.",
    ("next_best_action", "Cross-sell Mortgage"): "Mortgage consultation offer to engaged savers.",
}


def suggestion(family: str, segment: str) -> str | None:
    """The playbook's suggestion for a shipped segment (None for any other)."""
    return PLAYBOOK.get((family, segment))
