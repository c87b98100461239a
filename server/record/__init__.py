"""The consultation record: plan versions and their approval, snapshots, the report, the audit trail's
browser and verification, alliance administration (users, quotas, retention) and notifications."""
