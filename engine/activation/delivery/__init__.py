"""Delivery of action decisions to webhooks, SMTP, in-app and CRM destinations (``segflow deliver``).

Modules, one job each: ``config`` (the destinations file), ``templates`` (Jinja2 email
templates), ``webhook`` (signed JSON requests), ``crm`` (the CRM upsert body), ``smtp``
(emails), ``ratelimit`` (a token bucket per destination), ``retry`` (backoff and outcomes),
``dispatch`` (one destination's attempts), ``ledger`` (which offsets may be committed),
``counters`` and ``metrics`` (what was done, and its Prometheus page) and ``service`` (the
consume, deliver, dead-letter and commit loop).
"""
