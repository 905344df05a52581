"""Sync-back: helpdesk tickets solved -> inbox items resolved; inbox actions -> PagerDuty.

One module per system (``zendesk``, ``jira_sm``, ``freshdesk`` webhooks;
``servicenow``, ``request_tracker`` polls; ``pagerduty`` updates), the shared
``base``, the webhook ``server``, the ``config`` block and the ``service``
that starts them in the worker.
"""
