"""Stable user identity across Cognito pools: the logic behind the cognito_user_* DAGs.

Data flows one way: config -> cognito/extract -> snapshot -> reconcile (plan) -> table (apply) -> report.
"""
